"""Segments live on the stream: each batch's saved profiles in, transitions out.

Per batch: ``evaluate`` reads each changed customer's generations and pending
transitions (one round trip) and decides its memberships; the store then *stages* the
transitions (new generations and, beside them in the same hash write, the transitions
themselves as pending); the worker publishes them and waits for the broker; then the
store *clears* the pending ones. A worker that dies after staging leaves them pending:
they are published again, first, at the customer's next change, or by any worker's
``recover`` after ``PENDING_SECONDS``. The redelivered batch itself cannot do it: its
events are duplicates by then, so the profile is not saved again. Delivery is at least
once; a transition published twice has the same ``Transition.id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cdpulse.models.clv.lifetime import OrderSummary
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import SegmentBook
from cdpulse.segments.fields import profile_fields
from cdpulse.segments.membership import Transition, evaluate, transitions
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS
from cdpulse.segments.sketches import RfmSketches

PENDING_SECONDS = 30  # far longer than a batch's publish; shorter than anyone's patience


@dataclass(frozen=True, slots=True)
class Membership:
    """A customer's generation per segment, and transitions staged but not yet cleared."""

    generations: dict[str, int] = field(default_factory=dict)
    pending: tuple[Transition, ...] = ()


class MembershipStore(Protocol):
    """Where memberships and segment member lists live (Redis, or memory in tests)."""

    async def read(self, ids: list[str]) -> dict[str, Membership]: ...

    async def stage(self, changes: list[Transition], now_ms: int) -> None: ...

    async def clear(self, changes: list[Transition]) -> None: ...

    async def stale(self, before_ms: int, limit: int) -> list[Transition]: ...

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
        stored = await self.store.read(list(latest))
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
            mine = stored[customer_id]
            # Left pending by a worker that died before clearing: published again, first.
            out.transitions += mine.pending
            out.transitions += transitions(
                customer_id, mine.generations, result.members, result.decided, profile.last_seen
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
        stored = await self.store.read(list(summaries))
        out: list[Transition] = []
        for customer_id, summary in summaries.items():
            score = sketches.score(summary.last_order_at, summary.orders, summary.net_revenue)
            mine = stored[customer_id]
            changes = (
                transitions(customer_id, mine.generations, {score.segment.id}, rfm_ids, at_ms)
                if score is not None
                else []
            )
            if changes:
                out += [*mine.pending, *changes]
        return out

    async def stage(self, changes: list[Transition], now_ms: int) -> None:
        """Store the new generations with the transitions pending, before publishing."""
        if changes:
            await self.store.stage(changes, now_ms)

    async def clear(self, changes: list[Transition]) -> None:
        """The broker has them: no longer pending."""
        if changes:
            await self.store.clear(changes)

    async def recover(self, now_ms: int, exclude: set[str], limit: int = 100) -> list[Transition]:
        """Transitions pending for longer than ``PENDING_SECONDS``: a worker died."""
        stale = await self.store.stale(now_ms - PENDING_SECONDS * 1000, limit)
        return [t for t in stale if t.customer_id not in exclude]
