"""What one batch reads from the state store and what it writes back, as plain data.

A batch makes one read (``Wanted`` in, ``View`` out) and one write (``Changes``): every
profile it changed, each saved by compare-and-set together with everything that must
change with it (identity links, merged visitors retired, schedules, segment member
lists, the lifetime-value summary, identity-index entries), so that a profile and what
is derived from it never disagree, whoever else writes meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import msgspec

from cdpulse.profile.model import Profile


class SaveStatus(Enum):
    """Outcome of one compare-and-set save."""

    SAVED = "saved"
    CONFLICT = "conflict"  # the version moved: someone else wrote; re-read and re-apply
    ALIASED = "aliased"  # the id now belongs to a customer: re-resolve and re-apply
    LINK_TAKEN = "link_taken"  # a visitor it merges was linked to someone else meanwhile


class Stored(msgspec.Struct, gc=False):
    """A profile as read, with the version a save must match (0: not stored yet).

    ``blob`` is its stored bytes: the stages change ``profile`` in place, and a stage
    that raises halfway is retried from a fresh copy (``pipeline.batch`` quarantine).
    ``staged``: a batch's save not acknowledged yet, which a later batch may start from
    (``StateStore.stage``); cleared when the write saved it, kept when it was refused.
    """

    version: int
    profile: Profile | None
    blob: bytes | None = None
    staged: bool = False


@dataclass(slots=True)
class Wanted:
    """What a batch needs to read."""

    ids: set[str] = field(default_factory=set)  # profiles and aliases
    erased: set[str] = field(default_factory=set)  # ids to look up in the erasure ledger
    buyers: set[str] = field(default_factory=set)  # customers whose exposures to read
    experiments: tuple[str, ...] = ()
    due_shards: tuple[int, ...] = ()  # due-time shards (input partitions) to poll ...
    due_until: int = 0  # ... up to this event time
    due_limit: int = 500
    watermarks: bool = True  # the watermarks too (a follow-up read needs none)
    # Only what is written: none of the saves staged for a write still in flight. A batch
    # deciding again what its write refused must not start from a later batch's staged
    # saves: they were decided on this batch's refused ones (``ProfilePipeline._finish``).
    written_only: bool = False


@dataclass(slots=True)
class View:
    """What the store answered: the state a batch's stages work on."""

    profiles: dict[str, Stored] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # linked id -> its customer
    erased: set[str] = field(default_factory=set)
    watermarks: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> ms
    # experiment -> customer -> (variant, exposed at)
    exposures: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    due: set[str] = field(default_factory=set)  # profiles with something due (loaded too)
    # The lowest (due time, id) that a churn schedule polled as its last one when it gave
    # all it may: more may be due after it (None: the polls gave everything due).
    due_cut: tuple[int, str] | None = None
    due_more: bool = False  # some schedule (churn or trigger) gave all it may
    round_trips: int = 1  # 0: everything came from memory
    # profiles handed over from the store's memory instead of read: the batch's write
    # gives them back (``Changes.lent``)
    lent: dict[str, Stored] = field(default_factory=dict)

    def merge(self, more: View) -> None:
        """Add a follow-up read (profiles found through aliases) to this one."""
        self.profiles.update(more.profiles)
        self.lent.update(more.lent)
        self.aliases.update(more.aliases)
        self.erased |= more.erased
        for name, seen in more.exposures.items():
            self.exposures.setdefault(name, {}).update(seen)

    def cut_due(self, last: tuple[int, str], churn: bool) -> None:
        """A schedule gave as many due ids as it may, ``last`` (due time, id) the last.

        Churn's cut the labels a batch decides (``DecideAt``); a trigger schedule's do not:
        a held trigger stays due until the gate judges its hour, and would hold every label
        behind it (firings are not published in decision order).
        """
        self.due_more = True
        if churn and (self.due_cut is None or last < self.due_cut):
            self.due_cut = last

    def low_watermark(self, partitions: int) -> int:
        """The event time every input partition has passed (0 until all reported)."""
        if len(self.watermarks) < partitions:
            return 0
        return min(self.watermarks.values(), default=0)


class MergedCustomer(msgspec.Struct, gc=False):
    """A known customer an admin merge retires into a save's profile: the ids linked to
    it (their links move to the survivor, so links stay one hop) and the segments whose
    member lists it leaves; its schedules and lifetime-value summary go with it."""

    linked: list[str] = msgspec.field(default_factory=list)
    segments: list[str] = msgspec.field(default_factory=list)


class Save(msgspec.Struct, gc=False):
    """One compare-and-set of a profile and what changes with it.

    ``links``: visitor ids this save links to the profile (refused with LINK_TAKEN when
    one is linked to another customer meanwhile); ``retire``: merged visitors whose
    profiles are deleted with it, each with the version that was merged (refused with
    CONFLICT when one moved: a write to the visitor since would be lost);
    ``churn_due``/``trigger_due``: the profile's next due times (None: nothing due);
    ``entered``/``left``: segment member lists; ``summary``: the lifetime-value summary
    (JSON), when it changed; ``identities``: pseudonyms of personal traits that now point
    at the profile; ``conversions`` and ``tallies``: experiment and trigger counters the
    profile's change settles, each counted once; ``kpis``: the KPI counters its events
    move (added by the save, so once).
    Everything in a save happens only if its compare-and-set does. A ``withheld`` save
    is answered CONFLICT by every store without being tried. ``customers``: known
    customers an admin merge retires into the profile (also in ``retire``): each gets a
    customer link and a merge marker, and a later save of one is refused ALIASED.
    """

    profile: Profile
    version: int
    links: list[str] = msgspec.field(default_factory=list)
    retire: dict[str, int] = msgspec.field(default_factory=dict)  # visitor -> version merged
    customers: dict[str, MergedCustomer] = msgspec.field(default_factory=dict)
    churn_due: int | None = None
    trigger_due: int | None = None
    entered: list[str] = msgspec.field(default_factory=list)
    left: list[str] = msgspec.field(default_factory=list)
    summary: bytes | None = None
    identities: list[str] = msgspec.field(default_factory=list)
    # (experiment, variant): the customer converted; counted once per customer
    conversions: list[tuple[str, str]] = msgspec.field(default_factory=list)
    # (claim id, rule, counter): trigger uplift counters, each claim counted once
    tallies: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
    pseudonym: str | None = None  # the id's pseudonym, indexed to the id once
    # KPI counter deltas (``cdpulse.kpis``): period -> field -> amount, added once
    kpis: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    schedules: tuple[str, ...] = ("churn", "trigger")  # the due times this save sets
    blob: bytes | None = None  # the profile encoded when it was staged (the bytes written)
    staged: Stored | None = None  # what the store handed to later batches meanwhile
    # Refused without being sent: it started from a profile the batch before was still
    # writing, and that write did not store what it started from (``ProfilePipeline``).
    withheld: bool = False


@dataclass(slots=True)
class Changes:
    """Everything one write round trip carries."""

    saves: list[Save] = field(default_factory=list)
    watermarks: dict[str, int] = field(default_factory=dict)
    lent: dict[str, Stored] = field(default_factory=dict)  # ``View.lent`` of the reads
