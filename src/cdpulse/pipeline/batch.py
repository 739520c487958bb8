"""The profile pipeline: one batch of messages from one read to one write.

    decode ──✗──▶ dead letters
    ONE read: profiles, links, the erasure ledger, watermarks, due schedules, exposures
    erasures the batch asks for (rare: their own round trips; the ids' events are dropped;
    the ledger's topic entries published and acknowledged before anything is erased)
    stitch (identity) → per profile: merge → apply → churn → segments → triggers → ...
    publish every record (acknowledged) → ONE write: compare-and-set of every profile with
    what changes with it

A typical batch makes two round trips to the state store: profiles reached only through
a link read in the first need one more. The whole call is idempotent: a batch processed
again (the worker died before committing its offsets) changes nothing, because each
profile remembers the last offset applied per ``topic:partition:key``; its records,
published before the write, are published again with the same ids (at least once).

Saves refused by compare-and-set (another writer moved the profile, linked its id or a
visitor it merges) are re-read and recomputed, up to ``MAX_ROUNDS`` times; the loop lives
here only, and gives up naming the ids it could not save. A stage that raises on one
profile quarantines that profile's offending messages to the dead-letter topic
(``processing_error``) and the rest of the batch proceeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.message import Message
from cdpulse.contract.mirror import ErasureRequestedEvent, IdentifyEvent, OrderCompletedEvent
from cdpulse.contract.validation import IDENTITY_REFUSED, MERGE_REFUSED, Rejection
from cdpulse.models.reco_stream import Forget
from cdpulse.pipeline.decode import Decoded, Item, decode_batch, quarantined
from cdpulse.pipeline.identity import stitch, unresolved, wanted_ids
from cdpulse.pipeline.outputs import Outputs, Stream
from cdpulse.pipeline.ports import Outlet, StateStore
from cdpulse.pipeline.stages import ProfileUpdate, Stages, Work
from cdpulse.pipeline.state import SaveStatus, Stored, View, Wanted
from cdpulse.privacy.ledger import entry_json
from cdpulse.profile.model import decode as decode_profile

log = logging.getLogger(__name__)

MAX_ROUNDS = 50
MAX_LINK_READS = 4  # links are one hop in practice; a hostile chain is cut short
# Profiles decided between two turns of the event loop (~2 ms): a batch decided while the
# one before it is written lets that write's replies in at once.
YIELD_EVERY = 16
# Messages decoded between two turns of the event loop: a message the contract must word
# a rejection for costs up to milliseconds (a hostile one, near CDPULSE_MAX_EVENT_BYTES),
# and a batch of thousands would hold the loop, and /healthz with it, for seconds.
DECODE_EVERY = 256
# The count (``Work.counts``) of profiles a batch decided only because something came due.
DUE_ONLY = "due_only"


class GaveUp(RuntimeError):
    """Compare-and-set kept failing for these profiles: a bug, or a writer that never
    stops racing this one. The batch stays unacknowledged and is retried."""

    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(sorted(ids)[:10])
        super().__init__(
            f"{len(ids)} profiles still conflicting after {MAX_ROUNDS} rounds: {shown}"
        )
        self.ids = list(ids)


class Targets(Protocol):
    """Whom one erasure request erases (``store.erasure.Targets``)."""

    @property
    def ids(self) -> list[str]: ...

    @property
    def pseudonyms(self) -> list[str]:
        """The ids' pseudonyms: the erasure ledger's keys."""
        ...


class Erasures(Protocol):
    """The eraser (``store.erasure.Eraser``): ``find`` changes nothing, ``erase`` records
    the ids in the store's ledger and then deletes them."""

    async def find(self, profile_id: str, also: list[str]) -> Targets: ...

    async def erase(
        self,
        targets: Any,  # what ``find`` returned
        requested_by: str,
        event_id: str,
        requested_at: int,
        erased_at: int,
    ) -> Any: ...


@dataclass(slots=True)
class BatchReport:
    """What one batch did, for metrics and tests."""

    messages: int = 0
    decoded: Decoded | None = None
    work: Work = field(default_factory=Work)
    dead_letters: int = 0
    quarantined: int = 0
    suppressed: int = 0  # events of erased ids, dropped
    link_conflicts: int = 0
    identity_refused: Counter[str] = field(default_factory=Counter)  # links refused, by rule
    rounds: int = 0
    round_trips: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # refused saves, by status
    erasures: list[Any] = field(default_factory=list)
    decided_at: int = 0  # the low watermark labels and triggers were decided at (at least)
    polled_all: bool = True  # False: more was due than the batch polled (``DecideAt``)
    due_cut: tuple[int, str] | None = None  # where it cut the labels it decided
    due: set[str] = field(default_factory=set)  # profiles polled because something was due
    low_watermark: int = 0  # with this batch's events: what the next batch decides at
    high_watermark: int = 0
    written_at: float = 0.0  # wall clock when the write was acknowledged (latency metrics)

    @property
    def saved_by_cause(self) -> tuple[int, int]:
        """Profiles saved with events (or merges) of the batch, and saved only for what
        came due (every profile loaded for that is saved: its schedule moves on)."""
        due_only = self.work.counts[DUE_ONLY]
        return max(0, len(self.work.saved) - due_only), due_only

    @property
    def poll(self) -> tuple[frozenset[str], tuple[int, str] | None]:
        """What the batch polled of the due schedules, and where it cut: an empty batch
        polling the same again decided nothing (a held trigger, a profile whose stages
        raise stay due), so whoever runs empty batches until nothing more is due stops."""
        return frozenset(self.due), self.due_cut


@dataclass(frozen=True, slots=True)
class DecideAt:
    """The watermark a batch decides each profile's labels and triggers at.

    ``low``, the low watermark of the batch before, unless a churn schedule had more due
    than a batch polls (``View.due_cut``): then each profile is decided only up to the
    last (due time, id) polled. What one batch decides then all comes before what the
    next decides, by (decision time, id) as labels are published, however many came due
    at once and wherever the stream was cut into batches. Each batch still gets on:
    every schedule's ids up to the cut were polled and are decided past it.
    """

    low: int
    cut: tuple[int, str] | None = None

    def of(self, profile_id: str) -> int:
        if self.cut is None:
            return self.low
        at, last = self.cut
        return min(self.low, at if profile_id <= last else at - 1)

    @property
    def floor(self) -> int:
        """What every profile was decided at, at least."""
        return self.low if self.cut is None else min(self.low, self.cut[0] - 1)


@dataclass(slots=True)
class Begun:
    """A batch decided but not published and written yet (``ProfilePipeline.begin``)."""

    report: BatchReport
    items: list[Item]
    due: set[str]
    view: View
    decide_at: DecideAt
    as_of: int
    work: Work
    per_profile: dict[str, Work]
    low: int
    letters: Outputs  # its dead letters
    # The saves of the batch that was being written when this one began: id -> what the
    # store handed to later batches of it (None: nothing, as the in-memory store does).
    racing: dict[str, Stored | None]


@dataclass(frozen=True, slots=True)
class Sharding:
    """Which due-time shards (input partitions) this worker polls, and a profile's shard."""

    owned: Callable[[], tuple[int, ...]]
    shard_of: Callable[[str], int]


class ProfilePipeline:
    """Applies batches of raw messages through the stages to a state store and an outlet."""

    def __init__(
        self,
        state: StateStore,
        outlet: Outlet,
        stages: Stages,
        *,
        partitions: int,
        max_bytes: int = 65536,
        max_future_skew: timedelta = timedelta(minutes=5),
        erasures: Erasures | None = None,
        sharding: Sharding | None = None,
        due_limit: int = 500,
        due_per_message: float = 0.0,
    ) -> None:
        self.state = state
        self.outlet = outlet
        self.stages = stages
        self.partitions = partitions  # input partitions the low watermark must hear from
        self.max_bytes = max_bytes
        self.max_future_skew = max_future_skew
        self.erasures = erasures
        self.sharding = sharding
        self.due_limit = due_limit
        # A batch covers event time in proportion to its messages, and what came due in
        # it: a larger batch may decide more (``Settings.due_per_message``).
        self.due_per_message = due_per_message
        # The low watermark as of the last batch: this batch polls what is due up to it and
        # decides labels and triggers at it, so that at each batch everything up to one
        # watermark is decided, in time order, however the stream was cut into batches.
        self.low_watermark = 0
        # The low watermark of the newest batch begun: the next one decides at it, even
        # while the batch it came from is still being written.
        self._planned_low = 0
        # The watermarks of the batches begun: a batch begun while the one before is
        # written reads the watermarks from before that write, and must not decide at a
        # lower watermark than running one after the other would.
        self._marks: dict[str, int] = {}
        # The saves of the newest batch begun (``Begun.racing`` of the next one).
        self._staged: dict[str, Stored | None] = {}

    async def run(self, messages: list[Message], now: datetime | None = None) -> BatchReport:
        """Apply one batch (possibly empty: then only what is due); safe to call again."""
        return await self.finish(await self.begin(messages, now))

    async def shared_watermark_moved(self) -> bool:
        """Whether the watermarks every worker writes have passed what this one's last
        batch saw: one read of them alone, for a worker whose own input is quiet.

        Its batches learn the other workers' partitions' watermarks only when they read;
        without this, a worker whose partitions went quiet would never decide what a
        later write of another worker made due for its profiles (until its next event).
        """
        view = await self.state.read(Wanted(watermarks=True))
        return view.low_watermark(self.partitions) > self._planned_low

    async def begin(
        self,
        messages: list[Message],
        now: datetime | None = None,
        *,
        previous: asyncio.Future[Any] | None = None,
    ) -> Begun:
        """Decode, read and decide a batch: all but publishing and writing it.

        It may run while ``previous``, the finish of the batch before, is in flight: it
        then starts from that batch's staged profiles, its own write refuses any it
        started from that the previous write did not save, and an erasure it asks for
        waits for the previous write. Its ``finish`` must come after that one's.
        """
        try:
            return await self._begin(messages, now or datetime.now(UTC), previous)
        except BaseException:
            self._abandon()
            raise

    async def finish(self, begun: Begun) -> BatchReport:
        """Publish and write a begun batch, re-deciding its refused saves; its report."""
        try:
            return await self._finish(begun)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """A batch failed: what was kept of it goes (its profiles may be half-changed in
        memory). A batch begun on it is refused where it started from what was not saved.
        """
        self.state.discard()
        self.forget()

    def forget(self) -> None:
        """Keep nothing from earlier batches but what was written: after a failure, and
        when partitions are revoked (their events may be applied by another worker)."""
        self._marks.clear()

    async def _begin(
        self, messages: list[Message], now: datetime, previous: asyncio.Future[Any] | None
    ) -> Begun:
        report = BatchReport(messages=len(messages))
        racing = self._staged if previous is not None and not previous.done() else {}
        decoded = Decoded()
        for at in range(0, len(messages), DECODE_EVERY):
            if at:
                await asyncio.sleep(0)
            part = decode_batch(
                messages[at : at + DECODE_EVERY],
                max_bytes=self.max_bytes,
                max_future_skew=self.max_future_skew,
                now=now,
                schemas=self.stages.rules.custom_schemas,
            )
            decoded.absorb(part)
        report.decoded = decoded
        letters = Outputs()
        for letter in decoded.dead_letters:
            letters.add(Stream.DEAD_LETTER, _key(letter), letter.to_json())
        report.dead_letters = len(decoded.dead_letters)

        newest: dict[tuple[str, int], int] = {}
        for item in decoded.items:
            where = (item.message.topic, item.message.partition)
            if item.event.at > newest.get(where, 0):
                newest[where] = item.event.at
        marks = {f"{topic}:{partition}": at for (topic, partition), at in newest.items()}
        view = await self._read(decoded.items, set(), report, due_until=self._planned_low)
        due = report.due = view.due
        decide_at = DecideAt(self._planned_low, view.due_cut)
        items, requests = self._screen(decoded.items, view, report)
        if requests:
            # An erasure must not race the previous batch's write of the same customer.
            if previous is not None and not previous.done():
                await asyncio.wait((previous,))
            items = await self._erase(requests, items, due, report)
            self.state.discard()  # nothing the erased customers were is kept in memory
        for known in (view.watermarks, self._marks):
            for name, at in known.items():
                if at > marks.get(name, 0):
                    marks[name] = at
        self._marks = dict(marks)
        low = 0 if len(marks) < self.partitions else min(marks.values())
        report.decided_at, report.low_watermark = decide_at.floor, low
        report.polled_all, report.due_cut = not view.due_more, view.due_cut
        report.high_watermark = max(marks.values(), default=0)

        as_of = max((i.event.at for i in items), default=report.high_watermark)
        report.rounds += 1
        work, per_profile = await self._compute(items, due, view, decide_at, as_of, report)
        outputs = Outputs()
        outputs.extend(letters)
        outputs.extend(work.outputs)
        work.outputs = outputs
        work.changes.watermarks = {
            n: at for n, at in marks.items() if at > view.watermarks.get(n, -1)
        }
        work.changes.lent = view.lent
        self.state.stage(work.changes)
        self._staged = {save.profile.id: save.staged for save in work.changes.saves}
        self._planned_low = max(self._planned_low, low)
        return Begun(
            report, items, due, view, decide_at, as_of, work, per_profile, low, letters, racing
        )

    async def _finish(self, begun: Begun) -> BatchReport:
        report, items, due = begun.report, begun.items, begun.due
        work, per_profile = begun.work, begun.per_profile
        refused: dict[str, SaveStatus] = {}
        doomed = self._doomed(begun)
        if doomed:
            work = self._withhold(begun, doomed)
        for attempt in range(MAX_ROUNDS):
            if attempt:
                pending_items = [i for i in items if i.target in refused]
                pending_due = {i for i in refused if i in due}
                # From what is written only: a batch begun meanwhile staged saves decided
                # on this one's refused ones (an event of a visitor it merged would be
                # found applied there, and skipped here, before either is written).
                view = await self._read(
                    pending_items, set(refused), report, poll=False, written_only=True
                )
                report.rounds += 1
                work, per_profile = await self._compute(
                    pending_items, pending_due, view, begun.decide_at, begun.as_of, report
                )
                work.changes.lent = view.lent
                self.state.stage(work.changes)
            await self.outlet.publish(work.outputs)
            statuses = await self.state.write(work.changes)
            report.round_trips += 1
            refused = {i: s for i, s in statuses.items() if s is not SaveStatus.SAVED}
            for status in refused.values():
                report.retries[status.value] += 1
            # The report counts each profile's work once: from the round that saved it.
            if not refused and not attempt and not doomed:
                # Every save of the batch stood at once (the common case): its work is
                # the sum of every profile's, added up already (``_compute``).
                report.work.absorb(begun.work, outputs=False)
            else:
                for target, mine in per_profile.items():
                    if target not in refused:
                        report.work.absorb(mine, outputs=False)
            if not refused:
                break
        else:
            raise GaveUp(list(refused))
        self.low_watermark = max(self.low_watermark, begun.low)
        report.work.examples.sort(key=lambda e: e.order)  # as published
        report.work.campaign.sort(key=lambda e: e.order)
        report.work.personas.sort(key=lambda e: e.order)
        report.written_at = datetime.now(UTC).timestamp()
        report.quarantined = report.work.counts["quarantined"]
        return report

    def _doomed(self, begun: Begun) -> set[str]:
        """The saves of ``begun`` that started from what the batch before it was writing,
        where that write did not store exactly what they started from.

        Their compare-and-set is bound to fail, and what they decided (segment
        transitions, firings, examples) stands on a profile that was never stored: it is
        not published, and they are decided again once that write is read back.
        """
        racing = begun.racing
        if not racing:
            return set()
        profiles = begun.view.profiles
        doomed = set()
        for save in begun.work.changes.saves:
            for profile_id in (save.profile.id, *save.retire):
                if profile_id in racing and not _stored_as_staged(
                    profiles.get(profile_id), racing[profile_id]
                ):
                    doomed.add(save.profile.id)
        return doomed

    def _withhold(self, begun: Begun, doomed: set[str]) -> Work:
        """``begun``'s work without the records of the ``doomed`` profiles, whose saves
        are withheld (refused without being tried)."""
        work = Work()
        work.outputs.extend(begun.letters)
        examples = []
        campaign = []
        personas = []
        for target, mine in begun.per_profile.items():
            if target in doomed:
                continue
            work.outputs.extend(mine.outputs)
            examples += mine.examples
            campaign += mine.campaign
            personas += mine.personas
        self.stages.publish_examples(examples, work, campaign, personas)
        for save in begun.work.changes.saves:
            save.withheld = save.profile.id in doomed
        work.changes = begun.work.changes
        return work

    # --- read --------------------------------------------------------------------------

    async def _read(
        self,
        items: list[Item],
        also: set[str],
        report: BatchReport,
        poll: bool = True,
        due_until: int = 0,
        written_only: bool = False,
    ) -> View:
        """The batch's state: one round trip, and one more per hop of links to follow.

        ``poll``: also ask the due schedules of this worker's shards what is due up to the
        watermark this batch decides at, and load those profiles. ``written_only``: none
        of the saves staged by later batches (``Wanted.written_only``).
        """
        ids = wanted_ids(items) | also
        buyers = {i.event.key for i in items if type(i.event) is OrderCompletedEvent}
        experiments = tuple(e.name for e in self.stages.engine.experiments)
        shards = self.sharding.owned() if self.sharding is not None and poll else ()
        wanted = Wanted(
            ids=ids,
            erased=ids,
            buyers=buyers if experiments else set(),
            experiments=experiments,
            due_shards=shards,
            due_until=due_until,
            due_limit=max(self.due_limit, int(len(items) * self.due_per_message)),
            written_only=written_only,
        )
        view = await self.state.read(wanted)
        report.round_trips += view.round_trips
        for _ in range(MAX_LINK_READS):
            missing = unresolved(view)
            if not missing:
                break
            # A link's customer is never erased while the link stands (erasure removes
            # both): only its profile, and its exposures if it bought, are read.
            more = await self.state.read(
                Wanted(
                    ids=missing,
                    buyers={view.aliases[b] for b in buyers if b in view.aliases} & missing
                    if experiments
                    else set(),
                    experiments=experiments,
                    watermarks=False,
                    written_only=written_only,
                )
            )
            report.round_trips += more.round_trips
            view.merge(more)
        return view

    def _screen(
        self, items: list[Item], view: View, report: BatchReport
    ) -> tuple[list[Item], list[Item]]:
        """Drop events of erased ids (the ledger); split off erasure requests."""
        kept: list[Item] = []
        requests: list[Item] = []
        erased = view.erased
        for item in items:
            event = item.event
            if type(event) is ErasureRequestedEvent:
                requests.append(item)  # erased again when re-delivered: idempotent
            elif erased and (event.customer_id in erased or event.anonymous_id in erased):
                report.suppressed += 1
            else:
                kept.append(item)
        return kept, requests

    # --- compute ------------------------------------------------------------------------

    async def _compute(
        self,
        items: list[Item],
        due: set[str],
        view: View,
        decide_at: DecideAt,
        as_of: int,
        report: BatchReport,
    ) -> tuple[Work, dict[str, Work]]:
        """The pure part: stitch, then every stage on every profile the batch touches.

        Returns the batch's work, and each profile's share of it (for the report).
        """
        stitching = stitch(items, view)
        report.link_conflicts += stitching.conflicts
        refused: dict[str, list[DeadLetter]] = {}  # target -> its refused identifies
        merge_rules: dict[str, list[str]] = {}  # target -> the rules its merges broke
        for refusal in stitching.refused:
            if refusal.repeat:
                continue
            item = refusal.item
            if refusal.merge:
                # Counted with its survivor's work, from the round that saves it.
                merge_rules.setdefault(item.target, []).append(refusal.rule)
            elif not refusal.retried:
                report.identity_refused[refusal.rule] += 1
            reason = MERGE_REFUSED if refusal.merge else IDENTITY_REFUSED
            rejection = Rejection(reason, refusal.detail, item.event.event_id)
            refused.setdefault(item.target, []).append(DeadLetter.of(item.message, rejection))
        updates: dict[str, ProfileUpdate] = {}

        def update_of(target: str) -> ProfileUpdate:
            update = updates.get(target)
            if update is None:
                stored = view.profiles.get(target) or Stored(0, None)
                update = updates[target] = ProfileUpdate(target, stored)
            return update

        for item in items:
            update_of(item.target).items.append(item)
        for target, sources in stitching.merges.items():
            merging = update_of(target)
            for source in sources:
                visitor = view.profiles[source]
                if visitor.profile is not None:
                    merging.merged.append(visitor.profile)
                    merging.merged_versions[source] = visitor.version
        for target, visitors in stitching.links.items():
            update_of(target).links += visitors
        for target, customers in stitching.customers.items():
            update_of(target).customers += customers
        for profile_id in due:
            stored = view.profiles.get(profile_id)
            # Gone (merged away, erased) or now someone's visitor: its customer carries on.
            if stored is not None and stored.profile is not None and profile_id not in view.aliases:
                update_of(profile_id).due = True

        work = Work()
        per_profile: dict[str, Work] = {}
        examples = []
        for n, update in enumerate(updates.values()):
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                # Let the previous batch's publish and write go on meanwhile (``begin``).
                await asyncio.sleep(0)
            mine = per_profile[update.target] = Work()
            # Published with the profile's work: withheld and decided again with it.
            for letter in refused.get(update.target, ()):
                mine.outputs.add(Stream.DEAD_LETTER, _key(letter), letter.to_json())
            for rule in merge_rules.get(update.target, ()):
                mine.counts[MERGE_REFUSED + ":" + rule] += 1
            low = decide_at.of(update.target)
            try:
                found = self.stages.one(update, low, as_of, view.exposures, mine)
            except Exception as exc:  # quarantine: one profile's input never stops a batch
                found = self._quarantine(update, exc, low, as_of, view, mine)
            if update.due and not update.items and not update.merged and mine.saved:
                mine.counts[DUE_ONLY] += 1  # saved for what came due, nothing else
            mine.examples += found
            examples += found
            work.absorb(mine)
        self.stages.publish_examples(examples, work, work.campaign, work.personas)
        return work, per_profile

    def _quarantine(
        self,
        update: ProfileUpdate,
        exc: Exception,
        low: int,
        as_of: int,
        view: View,
        work: Work,
    ) -> list[Any]:
        """Find which of a profile's messages make a stage raise, dead-letter them with
        ``processing_error`` and apply the others.

        Each message is tried on top of those that went through, every time from fresh
        copies of the stored profiles (the failed attempt changed them in place), and kept
        only if that does not raise. If the profile alone raises, nothing is saved: its
        messages are all quarantined (and a due-only profile waits for a fix).
        """
        log.warning("a stage raised %s; isolating the messages that cause it", type(exc).__name__)
        good: list[Item] = []
        bad: list[tuple[Item, Exception]] = []
        for item in [*update.items, None]:
            trial = good if item is None else [*good, item]
            scratch = Work()
            try:
                examples = self.stages.one(
                    _fresh(update, trial, view), low, as_of, view.exposures, scratch
                )
            except Exception as failure:
                if item is not None:
                    bad.append((item, failure))
                    continue
                log.error("a profile raises %s without any message; left as it is", failure)
                examples, scratch = [], Work()
                work.counts["quarantined_profiles"] += 1
            if item is None:
                work.absorb(scratch)
                for culprit, cause in bad:
                    letter = quarantined(culprit.message, cause, culprit.event.event_id)
                    work.outputs.add(Stream.DEAD_LETTER, _key(letter), letter.to_json())
                    work.counts["quarantined"] += 1
                return examples
            good = trial
        raise AssertionError("unreachable: the loop returns at its last step")

    # --- erasure ------------------------------------------------------------------------

    async def _erase(
        self, requests: list[Item], items: list[Item], due: set[str], report: BatchReport
    ) -> list[Item]:
        """Carry out the batch's erasure requests first; the batch's other events of the
        erased ids are dropped, so nothing computed about them leaves the worker.

        Dropping an event that came before the request in the partition ends where
        applying it and then erasing would: nothing of it remains. A visitor this batch
        links to the customer is erased with them (the link was the customer's own).
        """
        if self.erasures is None:
            return items
        found = []
        for request in requests:
            event = request.event
            assert type(event) is ErasureRequestedEvent
            visitors = sorted(
                i.event.anonymous_id
                for i in items
                if type(i.event) is IdentifyEvent
                and i.event.customer_id == event.key
                and i.event.anonymous_id is not None
            )
            found.append((event, await self.erasures.find(event.key, visitors)))
        # The ledger on its topic first, acknowledged, in one publish for the batch: a
        # rebuild into an empty Redis loads it from there, so no erasure may be carried
        # out that the topic does not hold. A failed publish fails the batch before
        # anything is erased, and the batch is retried.
        erased_at = int(datetime.now(UTC).timestamp() * 1000)
        ledger = Outputs()
        entry = entry_json(erased_at)
        for pseudonym_of_id in sorted({p for _, targets in found for p in targets.pseudonyms}):
            ledger.add(Stream.ERASURES, pseudonym_of_id.encode(), entry)
        await self.outlet.publish(ledger)
        outputs = Outputs()
        pseudonym = self.stages.engine.pseudonym
        gone: set[str] = set()
        for event, targets in found:
            erasure = await self.erasures.erase(
                targets,
                event.properties.requested_by or f"event:{event.channel}",
                event.event_id,
                event.at,
                erased_at,
            )
            report.erasures.append(erasure)
            gone.update(erasure.ids)
            for profile_id in erasure.ids:
                key = profile_id.encode()
                for stream in (Stream.RECOMMENDATIONS, Stream.TRIGGERS, Stream.SEGMENTS):
                    outputs.add(stream, key, None)
                forget = pseudonym(profile_id)
                # The learners whose topics carry pseudonyms drop them (their history
                # outlives the erasure): the recommender's shopper state, the personas'
                # newest points and members.
                for learned in (Stream.RECO_EVENTS, Stream.PERSONA_TRAINING):
                    outputs.add(learned, forget.encode(), Forget(forget).to_json())
            outputs.add(Stream.AUDIT, erasure.subject.encode(), erasure.audit_json())
        await self.outlet.publish(outputs)
        kept = [
            i for i in items if i.event.customer_id not in gone and i.event.anonymous_id not in gone
        ]
        report.suppressed += len(items) - len(kept)
        due -= gone
        return kept


def _key(letter: DeadLetter) -> bytes | None:
    return letter.key.encode() if letter.key else None


def _fresh(update: ProfileUpdate, items: list[Item], view: View) -> ProfileUpdate:
    """``update`` with ``items``, on fresh copies of the profiles as they were read."""
    stored = update.stored
    merged = []
    for profile in update.merged:
        source = view.profiles.get(profile.id)
        if source is not None and source.blob is not None:
            merged.append(decode_profile(source.blob))
    fresh = decode_profile(stored.blob) if stored.blob is not None else None
    return ProfileUpdate(
        update.target,
        Stored(stored.version, fresh, stored.blob),
        items,
        merged,
        update.merged_versions,
        update.links,
        update.customers,
        update.due,
    )


def _stored_as_staged(base: Stored | None, staged: Stored | None) -> bool:
    """Whether a batch started from ``staged`` (``base``), and the write that staged it
    stored it (it clears the flag once it did)."""
    return base is not None and base is staged and not base.staged
