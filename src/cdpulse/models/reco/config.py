"""The tunable constants of the recommender, in one frozen object."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass

MINUTE = 60_000
DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class RecoConfig:
    """How co-visitation, trending, candidates and the ranker behave.

    Levels are 1 view, 2 cart, 3 purchase; ``*_weights`` are indexed by level - 1.
    """

    # sessions: a customer's item events closer than ``session_gap`` apart, of which the
    # newest ``session_items`` distinct products pair with each new one
    session_gap: int = 30 * MINUTE
    session_items: int = 10
    # co-visitation: pair counts per relation (viewed / added / bought together), decayed
    covisitation_half_life: int = 7 * DAY
    relation_weights: tuple[float, float, float] = (1.0, 2.0, 2.0)
    neighbours: int = 50  # twice as many partners are kept per product (covisitation)
    # trending: decayed popularity, globally and per category
    trending_half_life: int = 3 * DAY
    trending_weights: tuple[float, float, float] = (1.0, 3.0, 5.0)
    # candidates
    anchors: int = 10  # the customer's newest products whose neighbours are candidates
    per_anchor: int = 20
    categories: int = 3  # the customer's strongest categories ...
    per_category: int = 30  # ... each giving its most popular products
    trending: int = 30
    recently_viewed: int = 20
    # the ranker learns from item events: their products against sampled candidates
    negatives: int = 4
    example_share: float = 0.2  # of item events that give examples (``examples``)
    # SGD's step: 0.05 left the weights noisy (averaging four shards' rankers scored
    # better than one); 0.01 gained ~0.01 hit@10 on the simulator, tied on MovieLens
    learning_rate: float = 0.01
    # at most this many of a list's products may be ones the customer viewed recently or
    # has in the cart (None: no limit); fewer leaves room for discovery
    seen_slots: int | None = None
    bought_kept: int = 200  # products remembered per customer to exclude them
    repeatable: AbstractSet[str] = frozenset()  # products bought again and again (grocery)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "repeatable", frozenset(self.repeatable))
        for name in ("session_gap", "covisitation_half_life", "trending_half_life"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RecoConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.example_share <= 1.0:
            raise ValueError(
                f"RecoConfig.example_share must be in [0, 1], got {self.example_share}"
            )
        for name in ("session_items", "neighbours", "anchors", "per_anchor", "bought_kept"):
            if getattr(self, name) < 1:
                raise ValueError(f"RecoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.per_anchor > 2 * self.neighbours:
            raise ValueError(
                f"RecoConfig.per_anchor ({self.per_anchor}) must be <= 2 * neighbours "
                f"({2 * self.neighbours}): the partners read are among those kept"
            )

    @property
    def digest(self) -> str:
        """A short fingerprint of every setting, part of the model version."""
        return _digest(self)


@functools.lru_cache(maxsize=64)
def _digest(config: RecoConfig) -> str:
    # Cached: every published recommendation list names its model version.
    items = sorted(
        (k, sorted(v) if isinstance(v, frozenset) else v) for k, v in asdict(config).items()
    )
    return hashlib.sha256(repr(items).encode()).hexdigest()[:8]
