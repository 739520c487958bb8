"""The recommender: learn from item events, recommend products with a score and a reason.

>>> r = Recommender()
>>> def view(t, p):
...     return {"event_id": f"e{t}", "type": "product_viewed", "timestamp": t,
...             "customer_id": "C-1", "channel": "web",
...             "properties": {"product_id": p, "category": "shoes", "price": 9.0}}
>>> for t, p in [(1_000, "P-1"), (2_000, "P-2")]:
...     r.learn_one("C-1", view(t, p))
>>> [(s.product_id, s.reason) for s in r.similar("P-1")]
[('P-2', 'viewed together with P-1')]
"""

from __future__ import annotations

import math
import pickle
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdpulse.contract.mirror import Event
from cdpulse.models.reco import covisitation, trending
from cdpulse.models.reco.candidates import Candidate, Context, fill, generate
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.interactions import PURCHASE, Interaction, interactions
from cdpulse.models.reco.ranker import Example, Ranker, features
from cdpulse.models.reco.state import REBASE_AFTER, MemoryState, RecoState, Shopper

VERSION = 1
_TOGETHER = {1: "viewed together with", 2: "added to cart with", 3: "bought together with"}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommended product, its score (higher is better) and why, in plain words."""

    product_id: str
    score: float
    reason: str


class Recommender:
    """Co-visitation, category and trending candidates, ranked by an online River model."""

    def __init__(self, config: RecoConfig | None = None, state: RecoState | None = None) -> None:
        self.config = config or RecoConfig()
        self.state: RecoState = MemoryState() if state is None else state
        self.ranker = Ranker(self.config)

    @property
    def model_version(self) -> str:
        """``reco-<version>-<config digest>-<examples learned>``: names one ranker snapshot."""
        return f"reco-{VERSION}-{self.config.digest}-{self.ranker.learned}"

    # --- learning ------------------------------------------------------------------------

    def learn_one(
        self, customer_id: str, event: Event | Mapping[str, Any], context: Context | None = None
    ) -> None:
        """Learn from one event of ``customer_id``; ``context``: its profile before it."""
        for example in self.observe(customer_id, event, context):
            self.ranker.learn_one(example)

    def observe(
        self, customer_id: str, event: Event | Mapping[str, Any], context: Context | None = None
    ) -> list[Example]:
        """Count the event into the state; return the ranker's examples from before it.

        ``learn_one`` is ``observe`` plus learning the examples in place; a worker that
        leaves learning to one learner publishes them instead (DESIGN: one learner).
        Events without products (page views, identify, ...) change nothing.
        """
        items = interactions(event)
        if not items:
            return []
        context = context or Context()
        shopper = self.state.shopper(customer_id)
        examples = self._examples(customer_id, shopper, context, items)
        landmark = self._landmark(items[0].time)
        covisitation.learn(self.state, self.config, shopper, items, landmark)
        trending.learn(self.state, self.config, items, landmark)
        for item in items:
            if item.level == PURCHASE:
                bought = shopper.bought
                bought[item.product_id] = max(item.time, bought.get(item.product_id, 0))
        if len(shopper.bought) > self.config.bought_kept:
            newest = sorted(shopper.bought.items(), key=lambda kv: (-kv[1], kv[0]))
            shopper.bought = dict(newest[: self.config.bought_kept])
        self.state.put_shopper(customer_id, shopper)
        return examples

    def _landmark(self, t: int) -> int:
        """The state's landmark: the first event's time, moved on when it grows old."""
        landmark = self.state.landmark()
        if landmark is None:
            self.state.rebase(t, 1.0, 1.0)
            return t
        shortest = min(self.config.covisitation_half_life, self.config.trending_half_life)
        if (t - landmark) / shortest > REBASE_AFTER:
            self.state.rebase(
                t,
                math.exp2(-(t - landmark) / self.config.covisitation_half_life),
                math.exp2(-(t - landmark) / self.config.trending_half_life),
            )
            return t
        return landmark

    def _examples(
        self, customer_id: str, shopper: Shopper, context: Context, items: list[Interaction]
    ) -> list[Example]:
        """The event's products as positives (weighted by level), sampled candidates not.

        Only a share ``example_share`` of item events give examples (chosen by a hash, so
        the same events are chosen in any process): each costs a candidate generation.
        """
        salt = f"{self.config.seed}:{customer_id}:{items[0].time}:".encode()
        if zlib.crc32(salt) >= self.config.example_share * 2**32:
            return []
        found = generate(self.state, self.config, shopper, context)
        positives = {i.product_id: i.level for i in items}
        missing = [Candidate(p) for p in positives if p not in found]
        fill(self.state, missing, context)
        found.update((c.product_id, c) for c in missing)
        examples = [
            Example(features(found[p]), True, float(level)) for p, level in positives.items()
        ]
        others = [p for p in found if p not in positives and self._allowed(p, shopper)]
        # sampled by a hash of (seed, customer, time, product): the same events give the
        # same examples in any process, whatever else that process has seen
        others.sort(key=lambda p: (zlib.crc32(salt + p.encode()), p))
        examples += [
            Example(features(found[p]), False, 1.0) for p in others[: self.config.negatives]
        ]
        return examples

    def _allowed(self, product: str, shopper: Shopper) -> bool:
        return product not in shopper.bought or product in self.config.repeatable

    # --- recommending --------------------------------------------------------------------

    def forget(self, customer_id: str) -> None:
        """Erase what the recommender keeps about one customer (their shopper state).

        Co-visitation and trending counts are sums over everyone and name nobody; they stay.
        """
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
        allowed = [
            c
            for c in generate(self.state, self.config, shopper, context).values()
            if self._allowed(c.product_id, shopper)
        ]
        scored = list(zip(self.ranker.scores(allowed), allowed, strict=True))
        scored.sort(key=lambda sc: (-sc[0], sc[1].product_id))
        chosen: list[Recommendation] = []
        seen_slots = self.config.seen_slots
        for score, c in scored:
            if len(chosen) == k:
                break
            if c.viewed > 0 or c.in_cart:
                if seen_slots is not None and seen_slots <= 0:
                    continue
                seen_slots = None if seen_slots is None else seen_slots - 1
            chosen.append(Recommendation(c.product_id, round(score, 6), self._reason(c)))
        return chosen

    def popular(self, customer_id: str, k: int = 10) -> list[Recommendation]:
        """The ``k`` most popular products the customer may still buy: the baseline."""
        shopper = self.state.shopper(customer_id)
        ranked = trending.top(self.state, k + len(shopper.bought))
        return [
            Recommendation(p, round(share, 6), "trending now")
            for p, share in ranked
            if self._allowed(p, shopper)
        ][:k]

    def similar(self, product_id: str, k: int = 10) -> list[Recommendation]:
        """Products most often viewed, added or bought with ``product_id``."""
        partners = covisitation.scores(self.state, self.config, product_id, k)
        return [
            Recommendation(p, round(share, 6), f"{_TOGETHER[relation]} {product_id}")
            for p, (share, relation) in partners.items()
        ]

    def _reason(self, c: Candidate) -> str:
        for source in self.ranker.reason_sources(c):
            if source == "covisitation" and c.anchor is not None:
                return f"{_TOGETHER[c.relation]} {c.anchor}"
            if source == "viewed" and c.viewed > 0:
                return "you viewed it recently"
            if source == "cart" and c.in_cart:
                return "in your cart"
            if source == "category" and c.category is not None and c.affinity > 0:
                return f"popular in {c.category}"
        return "trending now"

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
