"""The state store and the outlet in memory: unit tests and ``cdpulse evaluate`` (and the
outlet that drops every record in ``cdpulse rebuild``).

The same semantics as the Redis store (``store/state.py`` and its scripts ``read.lua``,
``write.lua``, ``due.lua``): a save
is a compare-and-set refused when the version (or that of a visitor it merges) moved,
when the id became someone's visitor (unless it is a known customer's: its own link then
goes; but a customer an admin merge merged away is refused), or when a visitor it links
belongs to someone else or has a profile it does not merge; everything in a save happens
only if the save does.
"""

from __future__ import annotations

from collections.abc import Callable

from cdpulse.pipeline.outputs import Outputs, Record, Stream
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Stored, View, Wanted
from cdpulse.profile.model import decode, encode


class MemoryState:
    """Profiles, links, schedules and counters in dicts."""

    def __init__(self, shard_of: Callable[[str], int] = lambda profile_id: 0) -> None:
        self.shard_of = shard_of
        self.blobs: dict[str, tuple[int, bytes]] = {}  # id -> (version, MessagePack)
        self.aliases: dict[str, str] = {}
        self.merged_into: dict[str, str] = {}  # merged customer -> survivor (admin merges)
        self.erased: set[str] = set()
        self.watermarks: dict[str, int] = {}
        self.churn_due: dict[int, dict[str, int]] = {}
        self.trigger_due: dict[int, dict[str, int]] = {}
        self.members: dict[str, set[str]] = {}
        self.summaries: dict[str, bytes] = {}
        self.identities: dict[str, str] = {}
        self.profile_of: dict[str, str] = {}  # pseudonym -> id
        self.exposures: dict[str, dict[str, tuple[str, int]]] = {}
        self.converted: dict[str, dict[str, str]] = {}  # experiment -> customer -> variant
        self.claims: set[str] = set()
        self.counters: dict[tuple[str, str], int] = {}  # (hash, field) -> n
        self.kpis: dict[str, dict[str, int]] = {}  # KPI period -> field -> amount
        self.reads = self.writes = 0
        # Tests set this to run code between a batch's read and its write (a racing writer).
        self.before_write: Callable[[], None] | None = None

    async def read(self, wanted: Wanted) -> View:
        self.reads += 1
        view = View()
        for i in wanted.ids:
            version, blob = self.blobs.get(i, (0, None))
            view.profiles[i] = Stored(version, decode(blob) if blob else None, blob)
            if i in self.aliases:
                view.aliases[i] = self.aliases[i]
        view.erased = {i for i in wanted.erased if i in self.erased}
        if wanted.watermarks:
            view.watermarks = dict(self.watermarks)
        for name in wanted.experiments:
            seen = self.exposures.get(name, {})
            view.exposures[name] = {c: seen[c] for c in wanted.buyers if c in seen}
        for shard in wanted.due_shards:
            for schedule in (self.churn_due, self.trigger_due):
                due = sorted(
                    (at, i) for i, at in schedule.get(shard, {}).items() if at <= wanted.due_until
                )
                if len(due) >= wanted.due_limit:
                    view.cut_due(due[wanted.due_limit - 1], schedule is self.churn_due)
                for _, i in due[: wanted.due_limit]:
                    view.due.add(i)
                    version, blob = self.blobs.get(i, (0, None))
                    view.profiles[i] = Stored(version, decode(blob) if blob else None, blob)
                    if i in self.aliases:
                        view.aliases[i] = self.aliases[i]
        return view

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        self.writes += 1
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        statuses = {save.profile.id: self._save(save) for save in changes.saves}
        for name, at in changes.watermarks.items():
            self.watermarks[name] = max(at, self.watermarks.get(name, -1))
        return statuses

    def stage(self, changes: Changes) -> None:
        """Nothing is kept between batches here: a later read sees the last write."""

    def discard(self) -> None:
        """Nothing is kept between batches here: every read decodes afresh."""

    def _save(self, save: Save) -> SaveStatus:
        if save.withheld:
            return SaveStatus.CONFLICT
        profile_id = save.profile.id
        customer = save.profile.customer_id is not None
        if profile_id in (self.merged_into if customer else self.aliases):
            return SaveStatus.ALIASED
        if self.blobs.get(profile_id, (0, b""))[0] != save.version:
            return SaveStatus.CONFLICT
        if any(self.aliases.get(v, profile_id) != profile_id for v in save.links):
            return SaveStatus.LINK_TAKEN
        if any(v in self.blobs and v not in save.retire for v in save.links):
            return SaveStatus.LINK_TAKEN  # a profile of its own, stored since the read
        if any(self.blobs.get(v, (0, b""))[0] != version for v, version in save.retire.items()):
            return SaveStatus.CONFLICT  # a visitor it merges was written since
        if customer:
            self.aliases.pop(profile_id, None)  # its own link no longer applies
        for visitor in save.links:
            self.aliases[visitor] = profile_id
        for merged, gone in save.customers.items():
            self.aliases[merged] = self.merged_into[merged] = profile_id
            for linked in gone.linked:  # every link stays one hop
                for links in (self.aliases, self.merged_into):
                    if links.get(linked) == merged:
                        links[linked] = profile_id
        self.blobs[profile_id] = (save.version + 1, encode(save.profile))
        for visitor in save.retire:
            self.blobs.pop(visitor, None)
        for merged, gone in save.customers.items():
            for schedule in (self.churn_due, self.trigger_due):
                schedule.get(self.shard_of(merged), {}).pop(merged, None)
            for segment in gone.segments:
                self.members.get(segment, set()).discard(merged)
            self.summaries.pop(merged, None)
        shard = self.shard_of(profile_id)
        for kind, schedule, due in (
            ("churn", self.churn_due, save.churn_due),
            ("trigger", self.trigger_due, save.trigger_due),
        ):
            if kind not in save.schedules:
                continue
            if due is None:
                schedule.get(shard, {}).pop(profile_id, None)
            else:
                schedule.setdefault(shard, {})[profile_id] = due
        for segment in save.entered:
            self.members.setdefault(segment, set()).add(profile_id)
        for segment in save.left:
            self.members.get(segment, set()).discard(profile_id)
        if save.summary is not None:
            self.summaries[profile_id] = save.summary
        for pseudonym in save.identities:
            self.identities[pseudonym] = profile_id
        if save.pseudonym is not None:
            self.profile_of.setdefault(save.pseudonym, profile_id)
        for experiment, variant in save.conversions:
            converted = self.converted.setdefault(experiment, {})
            if profile_id not in converted:
                converted[profile_id] = variant
                self._count(f"experiment:{experiment}", f"conversions:{variant}")
        for claim, rule, counter in save.tallies:
            if claim not in self.claims:
                self.claims.add(claim)
                self._count(f"uplift:{rule}", counter)
        for period, counts in save.kpis.items():
            into = self.kpis.setdefault(period, {})
            for name, amount in counts.items():
                into[name] = into.get(name, 0) + amount
        return SaveStatus.SAVED

    def _count(self, name: str, field: str) -> None:
        self.counters[(name, field)] = self.counters.get((name, field), 0) + 1

    def profile(self, profile_id: str) -> Stored:
        """A stored profile (following a link), for tests."""
        target = self.aliases.get(profile_id, profile_id)
        version, blob = self.blobs.get(target, (0, b""))
        return Stored(version, decode(blob) if blob else None, blob or None)


class MemoryOutlet:
    """Published records, in order, per stream (``keep=False``: dropped, as a rebuild does)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.sent: dict[Stream, list[Record]] = {}
        self.fail_next = 0  # tests: raise on the next n publishes (a broker down)

    async def publish(self, outputs: Outputs) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("outlet down (test)")
        if not self.keep:
            return
        for stream, records in outputs.records.items():
            self.sent.setdefault(stream, []).extend(records)

    def values(self, stream: Stream) -> list[bytes]:
        return [r.value for r in self.sent.get(stream, []) if r.value is not None]
