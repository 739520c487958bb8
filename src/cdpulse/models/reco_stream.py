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
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdpulse.contract.outputs import RecommendationList, RecommendedItem
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco.recommender import Recommendation
from cdpulse.models.reco.state import ServedState
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
    # Kafka's append time of the event's message (epoch seconds), for the latency of the
    # recommendation list it causes; 0.0 when unknown.
    ingested: float = 0.0

    @classmethod
    def of(
        cls, customer_id: str, event: dict[str, Any], profile: Profile, ingested: float = 0.0
    ) -> ItemEvent:
        context = Context.from_profile(profile)
        return cls(
            customer_id,
            event,
            dict(context.affinity),
            list(context.recently_viewed),
            list(context.cart),
            ingested,
        )

    @property
    def at_ms(self) -> int:
        """The event's time, in milliseconds since the epoch."""
        timestamp = self.event["timestamp"]
        if isinstance(timestamp, int | float):  # the contract allows epoch milliseconds
            return int(timestamp)
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000)

    @property
    def context(self) -> Context:
        return Context(self.affinity, tuple(self.recently_viewed), tuple(self.cart))

    def to_json(self) -> bytes:
        # Spelled out: dataclasses.asdict deep-copies the event, which cost more than
        # the rest of the forwarding.
        document = {
            "customer_id": self.customer_id,
            "event": self.event,
            "affinity": self.affinity,
            "recently_viewed": self.recently_viewed,
            "cart": self.cart,
            "ingested": self.ingested,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ItemEvent:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class RecoSnapshot:
    """A published recommender and the last reco-events offset it holds."""

    version: int
    recommender: Recommender
    offset: int

    def served(self) -> RecoSnapshot:
        """This snapshot for serving only: read-only, its ranking reads remembered."""
        recommender = Recommender(self.recommender.config, ServedState(self.recommender.state))
        recommender.ranker = self.recommender.ranker
        return RecoSnapshot(self.version, recommender, self.offset)


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


class ListThrottle:
    """Whether a customer is due a new recommendation list, in event time.

    A list costs a candidate generation and a ranking (about a millisecond), and a
    shopper clicking through products every few seconds gains little from a list per
    click. The worker that owns a customer's partition remembers when it last published
    one; after a rebalance the new owner may publish one early, which is harmless.
    At most ``capacity`` customers are remembered, the least recently published
    forgotten first.

    >>> throttle = ListThrottle(30_000)
    >>> [throttle.due("c", t) for t in (0, 10_000, 30_000, 31_000)]
    [True, False, True, False]
    """

    def __init__(self, interval_ms: int, capacity: int = 200_000) -> None:
        self.interval_ms = interval_ms
        self.capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()

    def due(self, customer_id: str, at_ms: int) -> bool:
        last = self._last.get(customer_id)
        if last is not None and at_ms - last < self.interval_ms:
            return False
        self._last[customer_id] = at_ms
        self._last.move_to_end(customer_id)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return True
