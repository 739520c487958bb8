"""The trigger engine: the batch processor's hooks, and the event-time expiry of watches.

While a batch is applied, ``observe`` and ``after_profile`` update each customer's watch
(saved with the profile) and say when it is next due. After the batch, ``expire`` loads
the watches the low watermark has reached, decides them and saves them back with the
same compare-and-set as profiles: a situation is decided by one writer, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from cdpulse.contract.mirror import Event
from cdpulse.profile.model import Profile
from cdpulse.store.base import ProfileStore, SaveStatus, Write
from cdpulse.triggers.decide import Attribution, Chooser, Decision, decide, next_due
from cdpulse.triggers.rules import TriggerConfig
from cdpulse.triggers.situations import Transition, entered, observe, scored
from cdpulse.triggers.watch import Watch

MAX_ROUNDS = 50


class Schedule(Protocol):
    """What the engine needs of the trigger store (Redis or memory)."""

    async def schedule(self, dues: dict[str, int]) -> None:
        """Set due times (epoch ms) of profiles, as a batch found them."""
        ...

    async def due(self, until: int, limit: int) -> dict[str, int]:
        """Profiles due at or before ``until``, with the due time as read."""
        ...

    async def move(self, moves: dict[str, tuple[int, int | None]]) -> None:
        """id -> (due time as read, new due time or None to drop): only where unchanged."""
        ...


def no_offer(rule: str, offers: list[str], trigger: str) -> None:
    """The chooser when no bandit is wired: firings carry no offer."""
    return None


# Publishes one round's firings before their decisions are saved (see ``expire``).
Publish = Callable[["Expired"], Awaitable[None]]


@dataclass(slots=True)
class Expired:
    """What one expiry pass decided."""

    decisions: list[Decision] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)  # as saved, by customer


class TriggerEngine:
    """Finds situations in applied events and decides them when the watermark passes."""

    def __init__(
        self,
        config: TriggerConfig,
        schedule: Schedule,
        *,
        session_gap: int,
        lateness: int = 0,
        chooser: Callable[[Profile], Chooser] | None = None,
    ) -> None:
        self.config = config
        self.schedule = schedule
        self.session_gap = session_gap
        # A situation at t is decided once the watermark is past t + lateness: events up
        # to that much behind their partition's newest still count (a checkout sent late).
        self.lateness = lateness
        self.chooser = chooser or (lambda profile: no_offer)

    # --- hooks called by the batch processor, per profile --------------------------------

    def observe(self, profile: Profile, event: Event, t: int) -> None:
        """An event was applied to ``profile`` at event time ``t``."""
        if event.customer_id is None or not self.config.rules:
            return
        if profile.watch is None:
            profile.watch = Watch()
        observe(profile.watch, event, t, self.config, self.session_gap)

    def after_profile(self, profile: Profile, transitions: Iterable[Transition] = ()) -> int | None:
        """The batch is applied and scored; when is the watch next due?

        ``transitions`` are the customer's segment changes in this batch, from the segment
        engine (win-back fires on entering its segment).
        """
        entries = list(transitions) if profile.customer_id is not None else []
        if profile.watch is None and not entries:
            return None
        watch = profile.watch = profile.watch or Watch()
        key = f"v{profile.churn_version}@{profile.last_seen}"
        scored(
            watch, profile.churn_risk, profile.churn_reasons, profile.last_seen, key, self.config
        )
        for transition in entries:
            entered(watch, transition, self.config)
        return next_due(watch, self.config)

    # --- after the batch ----------------------------------------------------------------

    async def enter(self, store: ProfileStore, transitions: Iterable[Transition]) -> int:
        """Hand segment transitions to the watches of their customers; how many took.

        Segments are evaluated after the batch is saved, and the RFM sweep moves
        customers who send nothing at all (lapsing ones, whom win-back is for), so the
        transitions cannot ride along with the batch: the watches are loaded, updated and
        saved back with the same compare-and-set, and scheduled. Entering twice is
        harmless: a situation already pending is not added again, and a decided one's
        trigger id is claimed once.
        """
        by_customer: dict[str, list[Transition]] = {}
        for t in transitions:
            if t.entered:
                by_customer.setdefault(t.customer_id, []).append(t)
        if not by_customer or not self.config.rules:
            return 0
        pending = set(by_customer)
        taken = 0
        for _ in range(MAX_ROUNDS):
            stored = await store.load(sorted(pending))
            writes: list[Write] = []
            dues: dict[str, int] = {}
            for customer, current in stored.items():
                profile = current.profile
                if profile is None or profile.customer_id is None:
                    pending.discard(customer)  # erased, expired or merged away
                    continue
                before = msgspec.msgpack.encode(profile.watch) if profile.watch else b""
                due = self.after_profile(profile, by_customer[customer])
                if profile.watch is None or msgspec.msgpack.encode(profile.watch) == before:
                    pending.discard(customer)  # nothing this rule set watches for
                    continue
                writes.append(Write(profile, current.version))
                if due is not None:
                    dues[customer] = due
            if dues:
                await self.schedule.schedule(dues)  # before the save, as for batches
            statuses = await store.save(writes) if writes else {}
            for write in writes:
                if statuses[write.profile.id] is not SaveStatus.CONFLICT:
                    pending.discard(write.profile.id)
                    taken += statuses[write.profile.id] is SaveStatus.SAVED
            if not pending:
                break
        return taken

    async def expire(
        self,
        store: ProfileStore,
        watermark: int,
        limit: int = 1000,
        publish: Publish | None = None,
    ) -> Expired:
        """Decide every watch due at ``watermark``; returns the decisions that were saved.

        ``publish`` gets each round's decisions before they are saved: a worker that dies
        in between decides the same situations again on restart, with the same trigger
        ids, which ``publish`` recognises (``RedisTriggerStore.claim``). Published after
        the save instead, a death in between would lose them.
        """
        out = Expired()
        if watermark <= 0:
            return out  # not every partition has reported yet
        watermark -= self.lateness
        for _ in range(MAX_ROUNDS):
            read = await self.schedule.due(watermark, limit)
            if not read:
                break
            stored = await store.load(list(read))
            writes: list[Write] = []
            found: dict[str, tuple[list[Decision], list[Attribution]]] = {}
            # id -> (due as read, next due or None): moved only if nobody moved it since.
            moves: dict[str, tuple[int, int | None]] = {}
            for profile_id, was in read.items():
                current = stored[profile_id]
                profile = current.profile
                if profile is None or profile.watch is None:
                    moves[profile_id] = (was, None)  # merged away, or nothing watched
                    continue
                before = msgspec.msgpack.encode(profile.watch)
                decided = decide(
                    profile.watch,
                    profile.customer_id or profile.id,
                    profile.consent,
                    watermark,
                    self.config,
                    self.chooser(profile),
                )
                moves[profile_id] = (was, next_due(profile.watch, self.config))
                if msgspec.msgpack.encode(profile.watch) != before:
                    found[profile_id] = decided
                    writes.append(Write(profile, current.version))
            if publish is not None and found:
                await publish(
                    Expired(
                        [d for ds, _ in found.values() for d in ds],
                        [a for _, attributions in found.values() for a in attributions],
                        {w.profile.id: w.profile for w in writes},
                    )
                )
            statuses = await store.save(writes) if writes else {}
            for write in writes:
                profile_id = write.profile.id
                status = statuses[profile_id]
                if status is SaveStatus.SAVED:
                    decisions, attributions = found[profile_id]
                    out.decisions += decisions
                    out.attributions += attributions
                    out.profiles[profile_id] = write.profile
                elif status is SaveStatus.CONFLICT:
                    del moves[profile_id]  # written meanwhile: still due, decided again
                else:  # ALIASED: merged into a customer, whose watch carries on
                    moves[profile_id] = (read[profile_id], None)
            await self.schedule.move(moves)
        return out
