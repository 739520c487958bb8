"""Recommendations in the stream: one learner keeps the recommender, every worker serves it.

The profile agent forwards each applied item event (product viewed, added, ordered),
with the customer's context from just before it, to a one-partition topic; a single
learner folds them into the recommender in that order and publishes a snapshot every
few seconds, with the last offset it holds. Every worker serves recommendations from
the newest snapshot it has loaded and publishes a list on each item event.

Between two snapshots the learner's progress lives in memory only: a learner that dies
re-reads from its snapshot's offset, so co-visitation counts are at least once, not
exactly once — unlike profiles, recommendation statistics tolerate it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cdpulse.contract.outputs import RecommendationList, RecommendedItem
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco.recommender import Recommendation
from cdpulse.profile.model import Profile

ITEM_TYPES = frozenset({"product_viewed", "product_added", "order_completed"})


@dataclass(frozen=True, slots=True)
class ItemEvent:
    """An applied item event and the customer's context just before it."""

    customer_id: str
    event: dict[str, Any]
    affinity: dict[str, float]
    recently_viewed: list[str]
    cart: list[str]

    @classmethod
    def of(cls, customer_id: str, event: dict[str, Any], profile: Profile) -> ItemEvent:
        context = Context.from_profile(profile)
        return cls(
            customer_id,
            event,
            dict(context.affinity),
            list(context.recently_viewed),
            list(context.cart),
        )

    @property
    def context(self) -> Context:
        return Context(self.affinity, tuple(self.recently_viewed), tuple(self.cart))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ItemEvent:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class RecoSnapshot:
    """A published recommender and the last reco-events offset it holds."""

    version: int
    recommender: Recommender
    offset: int


def recommendation_list(
    customer_id: str,
    items: list[Recommendation],
    snapshot: RecoSnapshot,
    cause: str | None,
) -> RecommendationList:
    """The document published to ``cdp.recommendations`` and served over HTTP."""
    return RecommendationList(
        customer_id=customer_id,
        items=[
            RecommendedItem(product_id=r.product_id, score=r.score, reason=r.reason) for r in items
        ],
        model_version=f"{snapshot.recommender.model_version}.s{snapshot.version}",
        caused_by=cause,
        generated_at=datetime.now(UTC),
    )
