"""The recommender: learn from item events, recommend products with a score and a reason.

>>> r = Recommender()
>>> def view(t, p):
...     return {"event_id": f"e{t}", "type": "product_viewed", "timestamp": t,
...             "customer_id": "C-1", "channel": "web",
...             "properties": {"product_id": p, "category": "shoes", "price": 9.0}}
>>> for t, p in [(1_000, "P-1"), (2_000, "P-2")]:
...     _ = r.learn_one("C-1", view(t, p))
>>> [(s.product_id, s.reason) for s in r.similar("P-1")]
[('P-2', 'viewed together with P-1')]
"""

from __future__ import annotations

import heapq
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mypy_extensions import mypyc_attr

from cdpulse.models.reco import covisitation, trending
from cdpulse.models.reco.candidates import Candidate, generate
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.context import Context
from cdpulse.models.reco.examples import examples
from cdpulse.models.reco.interactions import PURCHASE, interactions
from cdpulse.models.reco.ranker import Example, Folded, Ranker, Scorer
from cdpulse.models.reco.shards import ServedState
from cdpulse.models.reco.state import MemoryState, RecoState, Shopper, landmark_at

VERSION = 2  # of the model and its snapshot: 2 has one weighted map per product, shards
_TOGETHER = {1: "viewed together with", 2: "added to cart with", 3: "bought together with"}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommended product, its score (higher is better) and why, in plain words."""

    product_id: str
    score: float
    reason: str


# Pickled (its snapshots): an ordinary class when compiled (``setup.py``), so its pickles
# are the same in either build.
@mypyc_attr(native_class=False)
class Recommender:
    """Co-visitation, category and trending candidates, ranked by an online model.

    A learner's recommender holds a ``MemoryState`` and a ``Ranker``; ``merge`` makes a
    read-only one for serving from one or more learners (shards).
    """

    # The event time of the item events it learned, first and last (epoch ms), for its
    # model card; recommenders pickled before it was kept read this class default.
    event_times: tuple[int, int] | None = None

    def __init__(self, config: RecoConfig | None = None, state: RecoState | None = None) -> None:
        self.config = config or RecoConfig()
        self.state: RecoState = MemoryState.for_config(self.config) if state is None else state
        self.ranker: Scorer = Ranker(self.config)

    @property
    def model_version(self) -> str:
        """``reco-<version>-<config digest>-<examples learned>``: names one ranker snapshot."""
        return f"reco-{VERSION}-{self.config.digest}-{self.ranker.learned}"

    @classmethod
    def merge(cls, shards: Sequence[Recommender], remember: bool = True) -> Recommender:
        """One read-only recommender serving what the ``shards`` learned together.

        Counts are summed, each customer's shopper comes from their shard, the rankers are
        averaged (``Folded.average``). ``remember``: the shards no longer change (published
        snapshots), so repeated reads are computed once. With one shard, it recommends
        exactly as that shard does.
        """
        if not shards:
            raise ValueError("Recommender.merge needs at least one shard")
        config = shards[0].config
        states = []
        for shard in shards:
            if shard.config != config:
                raise ValueError(
                    f"Recommender.merge: shards disagree on their configuration "
                    f"({shard.config.digest} vs {config.digest}); give every learner the same"
                )
            if not isinstance(shard.state, MemoryState):
                raise TypeError("Recommender.merge takes learners' recommenders, not served ones")
            states.append(shard.state)
        merged = cls(config, ServedState(states, config, remember))
        merged.ranker = Folded.average([shard.ranker.folded() for shard in shards])
        return merged

    # --- learning ------------------------------------------------------------------------

    def learn_one(
        self, customer_id: str, event: Any, context: Context | None = None
    ) -> list[tuple[tuple[float, ...], float]]:
        """Learn from one event of ``customer_id``; ``context``: its profile before it.
        Returns each example's features and the score the ranker gave it before learning
        it (what the drift monitor reads).

        ``event``: a worker's event struct, a contract model, its dict, or its
        interactions already read (an ``ItemEvent``'s ``items``).
        """
        ranker = self.ranker
        if not isinstance(ranker, Ranker):
            raise TypeError("a served recommender is read-only; learn on a learner's")
        scored: list[tuple[tuple[float, ...], float]] = []
        items = interactions(event)
        if not items:
            return scored
        first = last = items[0].time
        if len(items) > 1:  # an order's products
            first, last = min(item.time for item in items), max(item.time for item in items)
        span = self.event_times
        self.event_times = (
            (first, last) if span is None else (min(span[0], first), max(span[1], last))
        )
        for example in self.observe(customer_id, items, context):
            scored.append((example.x, ranker.score_one(example.x)))
            ranker.learn_one(example)
        return scored

    def observe(
        self, customer_id: str, event: Any, context: Context | None = None
    ) -> list[Example]:
        """Count the event into the state; return the ranker's examples from before it.

        ``learn_one`` is ``observe`` plus learning the examples. Events without products
        (page views, identify, ...) change nothing.
        """
        items = interactions(event)
        if not items:
            return []
        state = self.state
        if not isinstance(state, MemoryState):
            raise TypeError("a served recommender is read-only; learn on a learner's")
        config = self.config
        context = context or Context()
        shopper = state.shopper(customer_id)
        found = examples(state, config, customer_id, shopper, context, items)
        landmark = self._landmark(state, items[0].time)
        covisitation.learn(state, config, shopper, items, landmark)
        trending.learn(state, config, items, landmark)
        bought = shopper.bought
        for item in items:
            if item.level == PURCHASE:
                bought[item.product_id] = max(item.time, bought.get(item.product_id, 0))
        if len(bought) > config.bought_kept:
            newest = sorted(bought.items(), key=lambda kv: (-kv[1], kv[0]))
            shopper.bought = dict(newest[: config.bought_kept])
        state.put_shopper(customer_id, shopper)
        return found

    def _landmark(self, state: MemoryState, t: int) -> int:
        """The state's landmark: the grid point of the newest event (see ``state``)."""
        config = self.config
        landmark = state.landmark()
        now = landmark_at(t, min(config.covisitation_half_life, config.trending_half_life))
        if landmark is None:
            state.rebase(now, 1.0, 1.0)
            return now
        if now > landmark:
            state.rebase(
                now,
                math.exp2(-(now - landmark) / config.covisitation_half_life),
                math.exp2(-(now - landmark) / config.trending_half_life),
            )
            return now
        return landmark

    def _allowed(self, product: str, shopper: Shopper) -> bool:
        return product not in shopper.bought or product in self.config.repeatable

    # --- recommending --------------------------------------------------------------------

    def forget(self, customer_id: str) -> None:
        """Erase what the recommender keeps about one customer (their shopper state).

        Co-visitation and trending counts are sums over everyone and name nobody; they stay.
        """
        if not isinstance(self.state, MemoryState):
            raise TypeError("a served recommender is read-only; forget on a learner's")
        self.state.forget_shopper(customer_id)

    def recommend(
        self, customer_id: str, context: Context | Mapping[str, Any] | None = None, k: int = 10
    ) -> list[Recommendation]:
        """The ``k`` best products for the customer now, best first.

        ``context`` is a ``Context`` or the profile JSON; products the customer bought are
        left out unless ``config.repeatable`` lists them, and at most ``config.seen_slots``
        of the ``k`` are products the customer viewed recently or has in the cart.
        """
        if not isinstance(context, Context):
            context = Context() if context is None else Context.from_view(context)
        shopper = self.state.shopper(customer_id)
        pool = generate(self.state, self.config, shopper, context)
        ranker = self.ranker.folded()
        # ``Folded.scores`` of each candidate's ``vector``, the same arithmetic in the same
        # order (so the same floats), read from the pool without a vector per candidate.
        b, w0, w1, w2, w3, w4, w5, w6 = ranker.with_prior()
        viewed, cart = pool.viewed, pool.cart
        affinity_of, viewed_of = pool.affinity.get, viewed.get
        bought, repeatable = shopper.bought, self.config.repeatable
        # Best first, ties by product: plain tuples compare in C, with no key function
        # per candidate (products are unique).
        keys: list[tuple[float, str]] = []
        append = keys.append
        rows = pool.rows
        for product, x0 in pool.covisitation.items():
            if product in bought and product not in repeatable:
                continue
            category, s, x4 = rows[product]
            a = affinity_of(category, 0.0) if category is not None else 0.0
            x5 = viewed_of(product, 0.0)
            x6 = 1.0 if product in cart else 0.0
            score = b + w0 * x0 + w1 * (a * s) + w2 * a + w3 * s + w4 * x4 + w5 * x5 + w6 * x6
            append((-score, product))
        seen_slots = self.config.seen_slots
        # Without a cap on seen products the first k are the list: no full sort.
        ranked = heapq.nsmallest(k, keys) if seen_slots is None else sorted(keys)
        chosen: list[Recommendation] = []
        for negated, product in ranked:
            if len(chosen) == k:
                break
            if viewed.get(product, 0.0) > 0 or product in cart:
                if seen_slots is not None and seen_slots <= 0:
                    continue
                seen_slots = None if seen_slots is None else seen_slots - 1
            c = pool.candidate(product)
            chosen.append(Recommendation(product, round(-negated, 6), _reason(ranker, c)))
        return chosen

    def popular(self, customer_id: str, k: int = 10) -> list[Recommendation]:
        """The ``k`` most popular products the customer may still buy: the baseline."""
        shopper = self.state.shopper(customer_id)
        for n in (max(k, self.config.trending), k + len(shopper.bought)):
            # most customers bought few of the top products: the first read is enough
            ranked = trending.top(self.state, n)
            chosen = [
                Recommendation(p, round(share, 6), "trending now")
                for p, share in ranked
                if self._allowed(p, shopper)
            ][:k]
            if len(chosen) == k or len(ranked) < n:
                break
        return chosen

    def similar(self, product_id: str, k: int = 10) -> list[Recommendation]:
        """Products most often viewed, added or bought with ``product_id``."""
        partners = covisitation.scores(self.state, product_id, k)
        return [
            Recommendation(p, round(share, 6), f"{_TOGETHER[relation]} {product_id}")
            for p, (share, relation) in partners.items()
        ]

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything (config, ranker and, for a ``MemoryState``, the state) as bytes."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes) -> Recommender:
        """A recommender from ``snapshot()`` bytes (trusted input: it is a pickle)."""
        restored = pickle.loads(blob)
        if not isinstance(restored, cls):
            raise TypeError(f"snapshot holds a {type(restored).__name__}, not a Recommender")
        return restored


def _reason(ranker: Folded, c: Candidate) -> str:
    for source in ranker.reason_sources(c):
        if source == "covisitation" and c.anchor is not None:
            return f"{_TOGETHER[c.relation]} {c.anchor}"
        if source == "viewed" and c.viewed > 0:
            return "you viewed it recently"
        if source == "cart" and c.in_cart:
            return "in your cart"
        if source == "category" and c.category is not None and c.affinity > 0:
            return f"popular in {c.category}"
    return "trending now"
