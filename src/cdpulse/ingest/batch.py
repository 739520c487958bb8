"""The batch processor: raw messages in, profiles saved exactly once, dead letters out.

One batch costs a handful of Redis round trips whatever its size: link aliases,
resolve ids, load profiles, save profiles (Lua compare-and-set), retire merged
anonymous profiles, raise watermarks. The whole call is idempotent: a batch that
is processed again (the worker died before committing its offsets) changes nothing,
because each profile remembers the last offset applied per ``topic:partition:key``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cdpulse.contract.mirror import ErasureRequestedEvent, Event, IdentifyEvent
from cdpulse.contract.validation import Rejection, decode
from cdpulse.ingest.dead_letter import DeadLetter
from cdpulse.ingest.message import Message
from cdpulse.models.labels import Example
from cdpulse.models.online import Enricher
from cdpulse.models.reco_stream import ITEM_TYPES, ItemEvent
from cdpulse.ops import metrics
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, is_duplicate, merge, new_profile, to_millis
from cdpulse.store.base import ProfileStore, SaveStatus, Write
from cdpulse.triggers.engine import TriggerEngine

log = logging.getLogger(__name__)

MAX_ROUNDS = 50


class Erasures(Protocol):
    """The erasure ledger and the eraser (``privacy.erasure.Eraser``)."""

    async def erased(self, ids: list[str]) -> set[str]: ...

    async def erase(
        self, profile_id: str, requested_by: str, event_id: str, requested_at: int
    ) -> Any: ...


class SaveRetriesExhausted(RuntimeError):
    """Compare-and-set kept failing: a bug, or a writer that never stops racing us."""


@dataclass(slots=True)
class _Item:
    message: Message
    event: Event
    target: str = ""


@dataclass(slots=True)
class BatchResult:
    """What one batch did."""

    applied: int = 0
    duplicates: int = 0
    merges: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    saved: list[Profile] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    item_events: list[ItemEvent] = field(default_factory=list)
    erasures: list[Any] = field(default_factory=list)  # privacy.erasure.Erasure
    suppressed: int = 0  # events of erased ids, dropped


class BatchProcessor:
    """Applies batches of raw messages to a ProfileStore."""

    def __init__(
        self,
        store: ProfileStore,
        rules: Rules,
        *,
        max_bytes: int = 65536,
        max_future_skew: timedelta = timedelta(minutes=5),
        enricher: Enricher | None = None,
        partitions: int = 1,
        item_events: bool = False,
        erasures: Erasures | None = None,
        triggers: TriggerEngine | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.enricher = enricher
        self.partitions = partitions  # input partitions the low watermark must hear from
        self.item_events = item_events  # collect item events for the recommender
        self.erasures = erasures
        self.triggers = triggers  # watches profiles for trigger situations
        self.max_bytes = max_bytes
        self.max_future_skew = max_future_skew

    def decode(
        self, messages: list[Message], now: datetime
    ) -> tuple[list[_Item], list[DeadLetter]]:
        """Split a batch into valid events and dead letters."""
        items: list[_Item] = []
        dead: list[DeadLetter] = []
        for message in messages:
            result = decode(
                message.value,
                now=now,
                max_bytes=self.max_bytes,
                max_future_skew=self.max_future_skew,
            )
            if isinstance(result, Rejection):
                dead.append(DeadLetter.of(message, result, now))
                metrics.EVENTS_REJECTED.labels(result.reason).inc()
            else:
                items.append(_Item(message, result))
                metrics.EVENTS_CONSUMED.labels(message.topic, result.type).inc()
                if isinstance(result, IdentifyEvent) and result.properties.traits:
                    metrics.TRAITS_DROPPED.inc(self.rules.traits.dropped(result.properties.traits))
        return items, dead

    async def process(self, messages: list[Message]) -> BatchResult:
        """Apply one batch; safe to call again with the same messages."""
        now = datetime.now(UTC)
        items, dead = self.decode(messages, now)
        result = BatchResult(dead_letters=dead)
        metrics.BATCH_SIZE.observe(len(messages))
        if not items:
            return result

        decoded = items  # suppressed events of erased ids still move time forward
        requests: list[_Item] = []
        if self.erasures is not None:
            items, requests = await self._screen(items, result)
        applying = [i for i in items if not isinstance(i.event, ErasureRequestedEvent)]
        if applying:
            merges = await self._link(applying)
            await self._resolve(applying, merges)
            await self._apply(applying, merges, result)
        if requests:
            await self._erase(requests, result)
        await self._advance_watermarks(decoded)

        written = time.time()
        for item in items:
            metrics.EVENT_TO_WRITTEN.observe(max(0.0, written - item.event.at / 1000))
            if item.message.timestamp is not None:
                metrics.INGEST_TO_WRITTEN.observe(max(0.0, written - item.message.timestamp))
        return result

    async def _screen(
        self, items: list[_Item], result: BatchResult
    ) -> tuple[list[_Item], list[_Item]]:
        """Drop events of erased ids (the ledger); split off erasure requests."""
        assert self.erasures is not None
        ids = sorted(
            {i for item in items for i in (item.event.customer_id, item.event.anonymous_id) if i}
        )
        erased = await self.erasures.erased(ids)
        kept: list[_Item] = []
        requests: list[_Item] = []
        for item in items:
            event = item.event
            if isinstance(event, ErasureRequestedEvent):
                requests.append(item)  # erased again when re-delivered: idempotent
            elif event.customer_id in erased or event.anonymous_id in erased:
                result.suppressed += 1
            else:
                kept.append(item)
        metrics.EVENTS_SUPPRESSED.inc(result.suppressed)
        return kept, requests

    async def _erase(self, requests: list[_Item], result: BatchResult) -> None:
        """Erase after the batch's other events were applied: nothing of them survives."""
        assert self.erasures is not None
        for item in requests:
            event = item.event
            assert isinstance(event, ErasureRequestedEvent)
            erasure = await self.erasures.erase(
                event.key,
                event.properties.requested_by or f"event:{event.channel}",
                event.event_id,
                to_millis(event),
            )
            result.erasures.append(erasure)
            metrics.ERASURES.inc()
        # Nothing this batch computed about them may leave the worker afterwards.
        gone = {i for erasure in result.erasures for i in erasure.ids}
        pseudonyms = self.rules.traits.pseudonymizer
        hidden = {pseudonyms.of_id(i) for i in gone}
        result.saved = [p for p in result.saved if p.id not in gone]
        result.examples = [e for e in result.examples if e.profile_id not in gone]
        result.item_events = [e for e in result.item_events if e.customer_id not in hidden]

    async def _link(self, items: list[_Item]) -> dict[str, list[str]]:
        """Link the anonymous ids that identify events name; customer -> ids to merge."""
        merges: dict[str, list[str]] = defaultdict(list)
        for item in items:
            event = item.event
            if not isinstance(event, IdentifyEvent) or event.anonymous_id is None:
                continue
            customer_id, anonymous_id = event.customer_id, event.anonymous_id
            if customer_id is None or anonymous_id == customer_id:
                continue
            linked_to = await self.store.link(anonymous_id, customer_id)
            if linked_to != customer_id:
                # First link wins (a shared device, say): the visitor stays with the
                # customer it was linked to first.
                metrics.LINK_CONFLICTS.inc()
                continue
            if anonymous_id not in merges[customer_id]:
                merges[customer_id].append(anonymous_id)
        return merges

    async def _resolve(self, items: list[_Item], merges: dict[str, list[str]]) -> None:
        """Point each event at its profile: customer_id, else the visitor's customer.

        A visitor resolved through an alias is also queued for merging: if a worker died
        between linking and merging, its profile is still there, and it must be merged
        before its re-delivered messages are checked for duplicates.
        """
        anonymous = sorted({i.event.key for i in items if i.event.customer_id is None})
        aliases = await self.store.resolve(anonymous)
        for item in items:
            event = item.event
            item.target = event.customer_id or aliases[event.key]
            if item.target != event.key and event.key not in merges[item.target]:
                merges[item.target].append(event.key)

    async def _apply(
        self, items: list[_Item], merges: dict[str, list[str]], result: BatchResult
    ) -> None:
        pending = {i.target for i in items} | set(merges)
        as_of = max(to_millis(i.event) for i in items)
        enricher = self.enricher
        # Labels are decided against the watermark as it stood before this batch: every
        # event time it covers has been applied, so what it decides cannot change.
        watermark = await self.low_watermark() if enricher is not None else 0
        for _ in range(MAX_ROUNDS):
            by_target: dict[str, list[_Item]] = defaultdict(list)
            for item in items:
                if item.target in pending:
                    by_target[item.target].append(item)
            targets = sorted(pending)
            sources = sorted({a for t in targets for a in merges.get(t, [])})
            stored = await self.store.load(targets + [s for s in sources if s not in pending])

            writes: list[Write] = []
            outcome: dict[str, tuple[int, int, list[str], list[Example], list[ItemEvent]]] = {}
            dues: dict[str, int] = {}
            trigger_dues: dict[str, int] = {}
            for target in targets:
                current = stored[target]
                profile = current.profile or new_profile(target)
                # Merge first: the visitor's offsets must be known before its re-delivered
                # messages (now resolved to this customer) are checked for duplicates.
                merged: list[str] = []
                for anonymous_id in merges.get(target, []):
                    other = stored[anonymous_id].profile
                    if other is None:
                        continue
                    if anonymous_id not in profile.merged_from:
                        merge(profile, other, self.rules)
                    # Retired even when merged by an earlier, interrupted attempt.
                    merged.append(anonymous_id)
                applied = duplicates = 0
                examples: list[Example] = []
                seen_items: list[ItemEvent] = []
                for item in by_target.get(target, []):
                    m = item.message
                    if (
                        self.item_events
                        and item.event.type in ITEM_TYPES
                        and _learns_from(profile)
                        and not is_duplicate(profile, item.event.event_id, m.source, m.offset)
                    ):
                        # The recommender learns from the customer as they were before it.
                        # Pseudonymous: the topic's history outlives an erasure.
                        pseudonyms = self.rules.traits.pseudonymizer
                        raw = pseudonyms.event(json.loads(m.value), target)
                        seen_items.append(
                            ItemEvent.of(pseudonyms.of_id(target), raw, profile, m.timestamp or 0.0)
                        )
                    if apply(profile, item.event, self.rules, m.source, m.offset):
                        applied += 1
                        if self.triggers is not None:
                            self.triggers.observe(profile, item.event, to_millis(item.event))
                    else:
                        duplicates += 1
                if (applied or merged) and enricher is not None:
                    examples, due = enricher.after_profile(profile, watermark, as_of)
                    if due is not None:
                        dues[target] = due
                if applied and self.triggers is not None:
                    trigger_due = self.triggers.after_profile(profile)
                    if trigger_due is not None:
                        trigger_dues[target] = trigger_due
                outcome[target] = (applied, duplicates, merged, examples, seen_items)
                if applied or merged:
                    writes.append(Write(profile, current.version))
                else:
                    result.duplicates += duplicates
                    metrics.DUPLICATES.inc(duplicates)
            if dues:
                # Scheduled before the save: a schedule with nothing to decide is harmless
                # (expiry finds nothing), an undecided day without one would wait forever.
                await self.store.schedule(dues)
            if trigger_dues and self.triggers is not None:
                await self.triggers.schedule.schedule(trigger_dues)
            statuses = await self.store.save(writes) if writes else {}

            retired: list[str] = []
            pending = set()
            realias: set[str] = set()
            for write in writes:
                target = write.profile.id
                status = statuses[target]
                if status is SaveStatus.SAVED:
                    applied, duplicates, merged, examples, seen_items = outcome[target]
                    result.examples += examples
                    result.item_events += seen_items
                    result.applied += applied
                    result.duplicates += duplicates
                    result.merges += len(merged)
                    result.saved.append(write.profile)
                    retired += merged
                    metrics.EVENTS_APPLIED.inc(applied)
                    metrics.DUPLICATES.inc(duplicates)
                    metrics.PROFILE_MERGES.inc(len(merged))
                else:
                    metrics.SAVE_RETRIES.labels(status.value).inc()
                    pending.add(target)
                    if status is SaveStatus.ALIASED:
                        realias.add(target)
            await self.store.retire(retired)
            if realias:
                aliases = await self.store.resolve(sorted(realias))
                for item in items:
                    if item.target in realias:
                        visitor, item.target = item.target, aliases[item.target]
                        pending.add(item.target)
                        if visitor not in merges[item.target]:
                            merges[item.target].append(visitor)
            if not pending:
                return
        raise SaveRetriesExhausted(f"profiles still conflicting after {MAX_ROUNDS} rounds")

    async def low_watermark(self) -> int:
        """The event time every input partition has passed (0 until all reported)."""
        return await self.store.low_watermark(self.partitions)

    async def expire(self, watermark: int, limit: int = 1000) -> list[Example]:
        """Decide every scheduled churn label the watermark has made decidable."""
        examples: list[Example] = []
        if self.enricher is None:
            return examples
        for _ in range(MAX_ROUNDS):
            ids = await self.store.due(watermark, limit)
            if not ids:
                break
            stored = await self.store.load(ids)
            writes: list[Write] = []
            decided: dict[str, list[Example]] = {}
            later: dict[str, int] = {}
            done: list[str] = []
            for profile_id in ids:
                current = stored[profile_id]
                if current.profile is None:
                    done.append(profile_id)  # merged away or never written
                    continue
                found, due = self.enricher.expire(current.profile, watermark)
                if due is None:
                    done.append(profile_id)  # nothing left to decide until it is active
                else:
                    later[profile_id] = due
                if found:
                    decided[profile_id] = found
                    writes.append(Write(current.profile, current.version))
            statuses = await self.store.save(writes) if writes else {}
            for profile_id, status in statuses.items():
                if status is SaveStatus.SAVED:
                    examples += decided[profile_id]
                elif status is SaveStatus.CONFLICT:
                    later[profile_id] = watermark  # written meanwhile: decide again
                    done = [i for i in done if i != profile_id]
                else:  # ALIASED: merged into a customer, whose profile carries on
                    later.pop(profile_id, None)
                    done.append(profile_id)
            await self.store.unschedule(done)
            await self.store.schedule(later)
        return sorted(examples, key=lambda e: e.order)

    async def _advance_watermarks(self, items: list[_Item]) -> None:
        marks: dict[str, int] = {}
        for item in items:
            name = item.message.partition_name
            marks[name] = max(marks.get(name, 0), to_millis(item.event))
        await self.store.advance_watermark(marks)
        metrics.WATERMARK.set(max(marks.values()) / 1000)


def _learns_from(profile: Profile) -> bool:
    """Whether the recommender may learn from this customer (README: consent matrix)."""
    return allows(profile, "analytics") and allows(profile, "personalization")
