"""Segments live on the stream: each batch's saved profiles in, transitions out.

``evaluate`` reads the stored generations (one round trip), decides each changed
customer's memberships and returns the transitions; the worker publishes them, waits
for the broker, and only then ``commit``s the new generations. A crash in between
publishes the same transitions (same ids) again on redelivery, or at the customer's
next change: delivery is at least once, with exact dedupe by ``Transition.id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cdpulse.models.lifetime import OrderSummary
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import SegmentBook
from cdpulse.segments.fields import profile_fields
from cdpulse.segments.membership import Transition, evaluate, transitions
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS
from cdpulse.segments.sketches import RfmSketches


class MembershipStore(Protocol):
    """Where generations and segment member lists live (Redis, or memory in tests)."""

    async def generations(self, ids: list[str]) -> dict[str, dict[str, int]]: ...

    async def apply(self, changes: list[Transition]) -> None: ...

    async def sizes(self, names: list[str]) -> dict[str, int]: ...

    async def members(self, name: str, after: str, limit: int) -> list[str]: ...


@dataclass(slots=True)
class Batch:
    """What one batch decided: transitions, and the segments whose condition raised."""

    transitions: list[Transition] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class SegmentTracker:
    """Evaluates a book of segments on changed profiles against a MembershipStore."""

    def __init__(
        self,
        book: SegmentBook,
        rules: Rules,
        store: MembershipStore,
        sketches: Callable[[], RfmSketches | None],
    ) -> None:
        self.book = book
        self.rules = rules
        self.store = store
        self.sketches = sketches

    async def evaluate(self, profiles: list[Profile]) -> Batch:
        """The transitions the newest state of each identified customer causes."""
        # Anonymous visitors are not segmented: their profile is retired when they log in.
        latest = {p.id: p for p in profiles if p.customer_id is not None}
        if not latest:
            return Batch()
        stored = await self.store.generations(list(latest))
        sketches = self.sketches() if self.book.rfm else None
        out = Batch()
        for customer_id, profile in latest.items():
            rfm = None
            summary = OrderSummary.of(profile)
            if sketches is not None and summary is not None:
                score = sketches.score(summary.last_order_at, summary.orders, summary.net_revenue)
                rfm = score.fields() if score is not None else None
            record = profile_fields(profile, self.rules, rfm)
            result = evaluate(self.book, record)
            out.errors += result.errors
            out.transitions += transitions(
                customer_id,
                stored.get(customer_id, {}),
                result.members,
                result.decided,
                profile.last_seen,
            )
        return out

    async def sweep_rfm(self, summaries: dict[str, OrderSummary], at_ms: int) -> list[Transition]:
        """RFM transitions of customers whose scores moved with the base, not by their own
        events: someone who stops buying drifts into at_risk as others keep buying.

        Only the RFM segments are decided here (custom conditions need the whole profile,
        so a condition reading ``rfm`` catches up at the customer's next event).
        """
        sketches = self.sketches() if self.book.rfm else None
        if sketches is None or not summaries:
            return []
        rfm_ids = [s.id for s in RFM_SEGMENTS]
        stored = await self.store.generations(list(summaries))
        out = []
        for customer_id, summary in summaries.items():
            score = sketches.score(summary.last_order_at, summary.orders, summary.net_revenue)
            if score is not None:
                members = {score.segment.id}
                out += transitions(customer_id, stored[customer_id], members, rfm_ids, at_ms)
        return out

    async def commit(self, changes: list[Transition]) -> None:
        """Store the new generations and member lists, after the transitions were published."""
        if changes:
            await self.store.apply(changes)
