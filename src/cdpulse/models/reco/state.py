"""What the recommender remembers, behind a small interface a Redis adapter can mirror.

Decayed scores use *forward decay* with one landmark time L for the whole state: an
observation of weight w at time t is stored as ``w * 2**((t - L) / half_life)``, and a
stored score s is worth ``s * 2**(-(now - L) / half_life)`` at ``now``. Adding is then a
plain increment (``ZINCRBY``, ``HINCRBYFLOAT``), the order of increments does not matter,
and ranking the members of one sorted set needs no decay at all: every member shares the
factor. The stored numbers grow by 2 per half-life, so once ``t - L`` passes
``REBASE_AFTER`` half-lives the state is *rebased*: L moves forward and every score is
multiplied by the same factor (rare; with a 1-day half-life, every ~8 months).

Redis layout the interface maps to (``{c}`` is the customer's hash tag):

=========================================  ====================================================
``reco:landmark``                           L (string, epoch ms)
``reco:covis:{relation}:{product}``         sorted set other -> stored score; ``ZINCRBY`` then
                                            ``ZREMRANGEBYRANK key 0 -(keep + 1)``
``reco:trending`` / ``reco:trending:{cat}`` sorted set product -> stored popularity
``reco:trending:total``                     hash ``*`` / category -> stored total popularity
``reco:category``                           hash product -> category
``{c}:reco``                                the customer's ``Shopper`` (MessagePack)
=========================================  ====================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

import msgspec

T = TypeVar("T")

REBASE_AFTER = 256  # half-lives between landmark and newest event; 2**256 is far from overflow
ALL = "*"  # the category key of totals over every product


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


class RecoState(Protocol):
    """Co-visitation, trending, product categories and shoppers; see the module doc."""

    def landmark(self) -> int | None:
        """The landmark time L, or None before the first event."""
        ...

    def rebase(self, landmark: int, covisitation_factor: float, trending_factor: float) -> None:
        """Set L (None before: just set it) and multiply every stored score by its factor."""
        ...

    def add_neighbour(
        self, relation: int, product: str, other: str, amount: float, keep: int
    ) -> None:
        """Add ``amount`` to the pair; then keep only the ``keep`` best neighbours.

        Pruning drops the lowest scores first, on a tie the smallest product id (the order
        of a Redis sorted set), so both implementations prune the same members.
        """
        ...

    def neighbours(self, relation: int, product: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` best neighbours of ``product``, best first (ties: larger id first)."""
        ...

    def add_popularity(self, product: str, category: str, amount: float) -> None:
        """Add ``amount`` to the product, its category's ranking and both totals."""
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
        """The customer's shopper state (a new one for an unknown customer)."""
        ...

    def put_shopper(self, customer_id: str, shopper: Shopper) -> None:
        """Store the customer's shopper state."""
        ...

    def forget_shopper(self, customer_id: str) -> None:
        """Remove the customer's shopper state (erasure)."""
        ...


class _Ranking:
    """Members ordered by score, best first, as a Redis sorted set read in reverse.

    Forward-decayed scores only grow, so an increment moves its member up by swaps with
    its predecessors, and the weakest member is always the last one.
    """

    __slots__ = ("order", "scores")

    def __init__(self) -> None:
        self.order: list[str] = []
        self.scores: dict[str, float] = {}

    def add(self, member: str, amount: float) -> None:
        order, scores = self.order, self.scores
        old = scores.get(member)
        if old is None:
            order.append(member)
            i = len(order) - 1
            score = amount
        else:
            i = order.index(member)
            score = old + amount
        scores[member] = score
        while i > 0 and (scores[order[i - 1]], order[i - 1]) < (score, member):
            order[i] = order[i - 1]
            i -= 1
        order[i] = member

    def prune(self, keep: int) -> None:
        while len(self.order) > keep:
            del self.scores[self.order.pop()]

    def top(self, n: int) -> list[tuple[str, float]]:
        return [(m, self.scores[m]) for m in self.order[:n]]

    def scale(self, factor: float) -> None:
        for member in self.order:
            self.scores[member] *= factor
        # scaling keeps the order, unless tiny scores underflow to the same value
        self.order.sort(key=lambda m: (self.scores[m], m), reverse=True)


class MemoryState:
    """``RecoState`` in dicts: for tests, ``reco_eval`` and ``cdpulse evaluate``."""

    def __init__(self) -> None:
        self._landmark: int | None = None
        self._neighbours: dict[tuple[int, str], _Ranking] = {}
        self._popularity: dict[str, _Ranking] = {ALL: _Ranking()}
        self._totals: dict[str, float] = {}
        self._categories: dict[str, str] = {}
        self._shoppers: dict[str, Shopper] = {}

    def landmark(self) -> int | None:
        return self._landmark

    def rebase(self, landmark: int, covisitation_factor: float, trending_factor: float) -> None:
        self._landmark = landmark
        for ranking in self._neighbours.values():
            ranking.scale(covisitation_factor)
        for ranking in self._popularity.values():
            ranking.scale(trending_factor)
        for category in self._totals:
            self._totals[category] *= trending_factor

    def add_neighbour(
        self, relation: int, product: str, other: str, amount: float, keep: int
    ) -> None:
        ranking = self._neighbours.get((relation, product))
        if ranking is None:
            ranking = self._neighbours[(relation, product)] = _Ranking()
        ranking.add(other, amount)
        ranking.prune(keep)

    def neighbours(self, relation: int, product: str, n: int) -> list[tuple[str, float]]:
        ranking = self._neighbours.get((relation, product))
        return [] if ranking is None else ranking.top(n)

    def add_popularity(self, product: str, category: str, amount: float) -> None:
        self._categories[product] = category
        for key in (ALL, category):
            ranking = self._popularity.get(key)
            if ranking is None:
                ranking = self._popularity[key] = _Ranking()
            ranking.add(product, amount)
            self._totals[key] = self._totals.get(key, 0.0) + amount

    def top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        ranking = self._popularity.get(category)
        return [] if ranking is None else ranking.top(n)

    def popularity(self, products: list[str]) -> list[float]:
        scores = self._popularity[ALL].scores
        return [scores.get(p, 0.0) for p in products]

    def total_popularity(self, category: str) -> float:
        return self._totals.get(category, 0.0)

    def categories(self, products: list[str]) -> list[str | None]:
        return [self._categories.get(p) for p in products]

    def shopper(self, customer_id: str) -> Shopper:
        shopper = self._shoppers.get(customer_id)
        # a copy, as a store would return: changes count only once put back
        return (
            Shopper()
            if shopper is None
            else msgspec.structs.replace(
                shopper, session=list(shopper.session), bought=dict(shopper.bought)
            )
        )

    def put_shopper(self, customer_id: str, shopper: Shopper) -> None:
        self._shoppers[customer_id] = shopper

    def forget_shopper(self, customer_id: str) -> None:
        self._shoppers.pop(customer_id, None)


class ServedState:
    """A published state read by serving only: reads of rankings are remembered.

    A served snapshot never changes (the learner keeps its own copy), so the partners of
    a product and the most popular products of a category, which every recommendation
    reads for its anchors and categories, are computed once per snapshot, not per list.
    """

    def __init__(self, state: RecoState) -> None:
        self._state = state
        self._neighbours: dict[tuple[int, str, int], list[tuple[str, float]]] = {}
        self._top: dict[tuple[str, int], list[tuple[str, float]]] = {}
        self._remembered: dict[Hashable, Any] = {}

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per ``key`` for this snapshot."""
        if key not in self._remembered:
            self._remembered[key] = compute()
        found: T = self._remembered[key]
        return found

    def landmark(self) -> int | None:
        return self._state.landmark()

    def rebase(self, landmark: int, covisitation_factor: float, trending_factor: float) -> None:
        raise TypeError("a served recommender state is read-only; learn on the learner's copy")

    def add_neighbour(
        self, relation: int, product: str, other: str, amount: float, keep: int
    ) -> None:
        raise TypeError("a served recommender state is read-only; learn on the learner's copy")

    def neighbours(self, relation: int, product: str, n: int) -> list[tuple[str, float]]:
        key = (relation, product, n)
        found = self._neighbours.get(key)
        if found is None:
            found = self._neighbours[key] = self._state.neighbours(relation, product, n)
        return found

    def add_popularity(self, product: str, category: str, amount: float) -> None:
        raise TypeError("a served recommender state is read-only; learn on the learner's copy")

    def top_products(self, category: str, n: int) -> list[tuple[str, float]]:
        key = (category, n)
        found = self._top.get(key)
        if found is None:
            found = self._top[key] = self._state.top_products(category, n)
        return found

    def popularity(self, products: list[str]) -> list[float]:
        return self._state.popularity(products)

    def total_popularity(self, category: str) -> float:
        return self._state.total_popularity(category)

    def categories(self, products: list[str]) -> list[str | None]:
        return self._state.categories(products)

    def shopper(self, customer_id: str) -> Shopper:
        return self._state.shopper(customer_id)

    def put_shopper(self, customer_id: str, shopper: Shopper) -> None:
        raise TypeError("a served recommender state is read-only; learn on the learner's copy")

    def forget_shopper(self, customer_id: str) -> None:
        raise TypeError("a served recommender state is read-only; forget on the learner's copy")
