"""What the recommender remembers: decayed co-visitation and popularity counts, shoppers.

Decayed scores use *forward decay* with a landmark time L: an observation of weight w at
time t is stored as ``w * 2**((t - L) / half_life)``, and a stored score s is worth
``s * 2**(-(now - L) / half_life)`` at ``now``. Adding is then a plain increment, the
order of increments does not matter, and ranking the members of one map needs no decay
at all: every member shares the factor.

L is a point of a fixed grid (multiples of ``LANDMARK_SPAN`` half-lives of the shorter
half-life), the newest one at or before the newest event. Learners that read different
customers (shards) so share it, and their counts add exactly: a merge is a sum. When an
event crosses into a new grid cell, L moves there and every score is multiplied by the
same factor (rare: with a 3-day half-life, every ~6 months); stored numbers so stay
below ``2**(2 * LANDMARK_SPAN)``.

``MemoryState`` is what a learner writes. Serving reads through ``RecoState``, which
``MemoryState`` and ``shards.ServedState`` (one or more learners' states merged) answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import msgspec

from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.leaders import Leaders, best

LANDMARK_SPAN = 64  # half-lives of the shorter half-life between two landmarks
ALL = "*"  # the category key of totals over every product

Partner = tuple[str, float, int]  # (other product, stored score, strongest relation)


class Shopper(msgspec.Struct):
    """One customer's recommender state: the open session window and what they bought."""

    # (product, strongest level this session, last time), oldest first
    session: list[tuple[str, int, int]] = msgspec.field(default_factory=list)
    session_last: int = -1
    bought: dict[str, int] = msgspec.field(default_factory=dict)  # product -> last purchase


def forward(weight: float, t: int, landmark: int, half_life: int) -> float:
    """The stored amount of an observation of ``weight`` at ``t``."""
    return weight * math.exp2((t - landmark) / half_life)


def decayed(stored: float, now: int, landmark: int, half_life: int) -> float:
    """What a stored score is worth at ``now``."""
    return stored * math.exp2(-(now - landmark) / half_life)


def landmark_at(t: int, shortest_half_life: int) -> int:
    """The grid landmark for an event at ``t``: the newest grid point at or before it.

    >>> landmark_at(1_000_000, 1_000), landmark_at(64_000, 1_000), landmark_at(63_999, 1_000)
    (960000, 64000, 0)
    """
    span = LANDMARK_SPAN * shortest_half_life
    return t - t % span


class RecoState(Protocol):
    """What recommending reads; ``MemoryState`` and ``shards.ServedState`` answer it."""

    def landmark(self) -> int | None:
        """The landmark time L, or None before the first event."""
        ...

    def partners(self, product: str, n: int) -> list[Partner]:
        """The ``n`` strongest co-visitation partners of ``product``, best first.

        Scores are the ``relation_weights``-weighted pair counts (stored, see above).
        """
        ...

    def mass(self, product: str) -> float:
        """The product's strongest partners' scores summed (its ``leaders``): a partner's
        share of that is what co-visitation scores a candidate with."""
        ...

    def top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` most popular products of ``category`` (``ALL``: of every category)."""
        ...

    def popularity(self, products: list[str]) -> list[float]:
        """Stored popularity of each product (0.0 for an unknown one)."""
        ...

    def total_popularity(self, category: str) -> float:
        """Stored popularity summed over ``category`` (``ALL``: over every product)."""
        ...

    def categories(self, products: list[str]) -> list[str | None]:
        """The category of each product, None for a product never seen."""
        ...

    def shopper(self, customer_id: str) -> Shopper:
        """The customer's shopper state (a new one for an unknown customer); read only."""
        ...


class MemoryState:
    """A learner's state, in dicts; it answers ``RecoState`` and takes the learner's writes.

    Co-visitation keeps, per product, one map partner -> weighted pair count, the
    strongest relation of the pairs above "viewed together", and its ``leaders``
    strongest partners with their summed score (the product's mass). A map is pruned
    back to its ``keep`` best partners when it grows past ``keep + keep // 2``:
    amortised, so an increment costs a few dict operations. Popularity keeps a map per
    category and one over every product, their totals and their ``popular`` leaders.
    """

    def __init__(self, leaders: int = 20, keep: int = 100, popular: int = 30) -> None:
        if not 1 <= leaders <= keep:
            raise ValueError(f"MemoryState: need 1 <= leaders <= keep, got {leaders}, {keep}")
        self._leaders_size = leaders
        self._keep = keep
        self._prune_at = keep + max(1, keep // 2)
        self._popular_size = popular
        self._landmark: int | None = None
        self._partners: dict[str, dict[str, float]] = {}
        self._strong: dict[str, dict[str, int]] = {}  # relation > 1 only: they are few
        self._partner_leaders: dict[str, Leaders] = {}
        self._popularity: dict[str, dict[str, float]] = {ALL: {}}
        self._popular_leaders: dict[str, Leaders] = {ALL: Leaders(popular)}
        self._totals: dict[str, float] = {}
        self._categories: dict[str, str] = {}
        self._shoppers: dict[str, Shopper] = {}

    @classmethod
    def for_config(cls, config: RecoConfig) -> MemoryState:
        """Leaders for what candidates read, and ``2 * neighbours`` partners kept."""
        return cls(
            config.per_anchor, 2 * config.neighbours, max(config.per_category, config.trending)
        )

    # --- writes ---------------------------------------------------------------------------

    def rebase(self, landmark: int, covisitation_factor: float, trending_factor: float) -> None:
        """Set L and multiply every stored score by its factor."""
        self._landmark = landmark
        if covisitation_factor != 1.0:
            for product, scores in self._partners.items():
                for other in scores:
                    scores[other] *= covisitation_factor
                self._partner_leaders[product].rebuild(scores)
        if trending_factor != 1.0:
            for category, scores in self._popularity.items():
                for product in scores:
                    scores[product] *= trending_factor
                self._popular_leaders[category].rebuild(scores)
            for category in self._totals:
                self._totals[category] *= trending_factor

    def add_pair(self, product: str, other: str, amount: float, relation: int) -> None:
        """Count the pair in both directions: ``amount`` (weighted), at ``relation``."""
        self._add_partner(product, other, amount, relation)
        self._add_partner(other, product, amount, relation)

    def _add_partner(self, product: str, other: str, amount: float, relation: int) -> None:
        scores = self._partners.get(product)
        if scores is None:
            scores = self._partners[product] = {}
            self._partner_leaders[product] = Leaders(self._leaders_size)
        scores[other] = scores.get(other, 0.0) + amount
        if relation > 1:
            strong = self._strong.get(product)
            if strong is None:
                strong = self._strong[product] = {}
            if strong.get(other, 0) < relation:
                strong[other] = relation
        leaders = self._partner_leaders[product]
        if other in leaders.members:  # a leader that grew stays one: only its total grows
            leaders.total += amount
        else:
            leaders.offer(scores, other, amount)
        if len(scores) > self._prune_at:
            self._prune(product, scores)

    def _prune(self, product: str, scores: dict[str, float]) -> None:
        # The leaders are among the ``keep`` best, so they stay.
        kept = dict(best(scores, self._keep))
        self._partners[product] = kept
        strong = self._strong.get(product)
        if strong is not None:
            self._strong[product] = {o: r for o, r in strong.items() if o in kept}

    def add_popularity(self, product: str, category: str, amount: float) -> None:
        """Add ``amount`` to the product, in its category and over every product."""
        self._categories[product] = category
        for key in (ALL, category):
            scores = self._popularity.get(key)
            if scores is None:
                scores = self._popularity[key] = {}
                self._popular_leaders[key] = Leaders(self._popular_size)
            scores[product] = scores.get(product, 0.0) + amount
            self._totals[key] = self._totals.get(key, 0.0) + amount
            self._popular_leaders[key].offer(scores, product, amount)

    def put_shopper(self, customer_id: str, shopper: Shopper) -> None:
        """Store the customer's shopper state."""
        self._shoppers[customer_id] = shopper

    def forget_shopper(self, customer_id: str) -> None:
        """Remove the customer's shopper state (erasure)."""
        self._shoppers.pop(customer_id, None)

    # --- reads ----------------------------------------------------------------------------

    def landmark(self) -> int | None:
        return self._landmark

    def partners(self, product: str, n: int) -> list[Partner]:
        scores = self._partners.get(product)
        if scores is None:
            return []
        if n <= self._leaders_size:
            ranked = self._partner_leaders[product].ranked(scores)[:n]
        else:
            ranked = best(scores, n)
        strong = self._strong.get(product, {})
        return [(other, score, strong.get(other, 1)) for other, score in ranked]

    def leading(self, product: str) -> tuple[dict[str, float], Mapping[str, None], float]:
        """The learner's fast path: the product's partner map, its leaders and its mass."""
        scores = self._partners.get(product)
        if scores is None:
            return {}, {}, 0.0
        leaders = self._partner_leaders[product]
        return scores, leaders.members, leaders.total

    def mass(self, product: str) -> float:
        leaders = self._partner_leaders.get(product)
        return 0.0 if leaders is None else leaders.total

    def leading_products(self, category: str, n: int) -> Mapping[str, None]:
        """The learner's fast path: the ``n`` most popular products of ``category``, unordered."""
        leaders = self._popular_leaders.get(category)
        if leaders is None:
            return {}
        members = leaders.members
        every = len(members) < leaders.size  # fewer products than leaders: all lead
        if n == leaders.size or (every and n >= len(members)):
            return members
        return dict.fromkeys(m for m, _ in self.top_products(category, n))

    def top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        scores = self._popularity.get(category)
        if scores is None:
            return []
        if n <= self._popular_size:
            return self._popular_leaders[category].ranked(scores)[:n]
        return best(scores, n)

    def popularity(self, products: list[str]) -> list[float]:
        scores = self._popularity[ALL]
        return [scores.get(p, 0.0) for p in products]

    def total_popularity(self, category: str) -> float:
        return self._totals.get(category, 0.0)

    def categories(self, products: list[str]) -> list[str | None]:
        return [self._categories.get(p) for p in products]

    def shopper(self, customer_id: str) -> Shopper:
        # The stored object itself: the learner updates it in place, readers only read.
        shopper = self._shoppers.get(customer_id)
        return Shopper() if shopper is None else shopper

    # --- what a merge reads ---------------------------------------------------------------

    def partner_scores(self, product: str) -> tuple[dict[str, float], dict[str, int]]:
        """The product's whole partner map and its relations above 1."""
        return self._partners.get(product, {}), self._strong.get(product, {})

    def popularity_scores(self, category: str) -> dict[str, float]:
        """The whole popularity map of ``category`` (``ALL``: of every product)."""
        return self._popularity.get(category, {})

    def customers(self) -> int:
        """How many customers' shopper states this state holds."""
        return len(self._shoppers)

    def has_shopper(self, customer_id: str) -> bool:
        """Whether this state holds the customer's shopper (their shard does)."""
        return customer_id in self._shoppers
