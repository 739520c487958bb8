"""Shards: learners that each hold some customers, served as one recommender.

``cdp.reco-events`` is keyed by the customer's pseudonym, so Kafka's partitioner puts a
customer's item events in one partition, in order; ``shard_of`` is that partitioner.
One learner state per partition (a learner process may hold several) keeps:

* its customers' ``Shopper`` state (session windows, purchases) and nobody else's;
* its ranker, learned from its customers' examples;
* *partial* co-visitation and popularity counts, from its customers' events only.

``ServedState`` reads the partial counts of every shard as one: forward-decayed counts
with a shared landmark are sums (``state``), so merged scores are the counts of all
events; a customer's shopper comes from the shard that holds it. Shards at different
landmarks (one has crossed into a new grid cell, another not yet) are rescaled to the
newest. With one shard every read is that shard's own: serving equals the learner.

Per-shard pruning bounds each shard's maps, so a pair pruned in one shard and kept in
another is summed from the latter only; both keep the strongest partners, which are the
ones read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

from cdpulse.contract.partitions import partition_of
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.leaders import best
from cdpulse.models.reco.state import MemoryState, Partner, Shopper

T = TypeVar("T")


def shard_of(customer_id: str, shards: int) -> int:
    """The shard (partition) holding ``customer_id``: Kafka's default partitioner on the key.

    >>> shard_of("C-1", 1), [shard_of(c, 4) for c in ("C-1", "C-2", "C-3")]
    (0, [3, 2, 3])
    """
    return partition_of(customer_id, shards)


class ServedState:
    """The states of one or more shards, read as one (``RecoState``); never written.

    With ``remember`` (a published snapshot, which never changes), the reads every
    recommendation repeats, a product's partners and a category's top products, are
    computed once per snapshot. Without it (shards still learning), every read is fresh.
    """

    def __init__(
        self, shards: Sequence[MemoryState], config: RecoConfig, remember: bool = True
    ) -> None:
        if not shards:
            raise ValueError("ServedState needs at least one shard state")
        self._shards = list(shards)
        self._leaders = config.per_anchor
        self._remember = remember
        self._remembered: dict[Hashable, object] = {}
        # product -> (category, share of its category's popularity, of all popularity)
        self._rows: dict[str, tuple[str | None, float, float]] = {}
        landmarks = [s.landmark() for s in self._shards]
        known = [landmark for landmark in landmarks if landmark is not None]
        self._landmark = max(known) if known else None
        # what brings each shard's stored scores to the common landmark (1.0 when shared)
        self._covisitation = [
            _factor(landmark, self._landmark, config.covisitation_half_life)
            for landmark in landmarks
        ]
        self._trending = [
            _factor(landmark, self._landmark, config.trending_half_life) for landmark in landmarks
        ]

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per ``key`` when remembering (a published snapshot)."""
        if not self._remember:
            return compute()
        if key not in self._remembered:
            self._remembered[key] = compute()
        found: T = self._remembered[key]  # type: ignore[assignment]
        return found

    def remembered_rows(self) -> dict[str, tuple[str | None, float, float]] | None:
        """The products' rows ``candidates.shares`` computed from this snapshot (None:
        not remembering; fill it in place)."""
        return self._rows if self._remember else None

    def landmark(self) -> int | None:
        return self._landmark

    def partners(self, product: str, n: int) -> list[Partner]:
        return self.remember(("partners", product, n), lambda: self._partners(product, n))

    def _partners(self, product: str, n: int) -> list[Partner]:
        if len(self._shards) == 1:
            return self._shards[0].partners(product, n)
        summed: dict[str, float] = {}
        relations: dict[str, int] = {}
        for shard, factor in zip(self._shards, self._covisitation, strict=True):
            scores, strong = shard.partner_scores(product)
            _add(summed, scores, factor)
            for other, relation in strong.items():
                if relation > relations.get(other, 1):
                    relations[other] = relation
        return [(o, score, relations.get(o, 1)) for o, score in best(summed, n)]

    def mass(self, product: str) -> float:
        if len(self._shards) == 1:
            return self._shards[0].mass(product)
        # the merged strongest partners' scores, as a learner sums its leaders'
        return sum(score for _, score, _ in self.partners(product, self._leaders))

    def top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        return self.remember(("top", category, n), lambda: self._top_products(category, n))

    def _top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        if len(self._shards) == 1:
            return self._shards[0].top_products(category, n)
        summed: dict[str, float] = {}
        for shard, factor in zip(self._shards, self._trending, strict=True):
            _add(summed, shard.popularity_scores(category), factor)
        return best(summed, n)

    def popularity(self, products: list[str]) -> list[float]:
        if len(self._shards) == 1:
            return self._shards[0].popularity(products)
        out = [0.0] * len(products)
        for shard, factor in zip(self._shards, self._trending, strict=True):
            for i, stored in enumerate(shard.popularity(products)):
                out[i] += stored * factor
        return out

    def total_popularity(self, category: str) -> float:
        if len(self._shards) == 1:
            return self._shards[0].total_popularity(category)
        return sum(
            shard.total_popularity(category) * factor
            for shard, factor in zip(self._shards, self._trending, strict=True)
        )

    def categories(self, products: list[str]) -> list[str | None]:
        out = self._shards[0].categories(products)
        for shard in self._shards[1:]:
            if None not in out:
                break
            found = shard.categories(products)
            out = [c if c is not None else o for c, o in zip(out, found, strict=True)]
        return out

    def shopper(self, customer_id: str) -> Shopper:
        for shard in self._shards:
            if shard.has_shopper(customer_id):
                return shard.shopper(customer_id)
        return Shopper()


def _factor(landmark: int | None, common: int | None, half_life: int) -> float:
    if landmark is None or common is None or landmark == common:
        return 1.0
    return math.exp2((landmark - common) / half_life)


def _add(summed: dict[str, float], scores: Mapping[str, float], factor: float) -> None:
    if factor == 1.0:
        for member, score in scores.items():
            summed[member] = summed.get(member, 0.0) + score
    else:
        for member, score in scores.items():
            summed[member] = summed.get(member, 0.0) + score * factor
