"""Who is in which segment, and the transitions (enter, leave) a profile change causes.

Per changed customer: ``decide(book, profile, rules, rfm)`` (its segments), then
``transitions(...)`` against the generations stored for it.

A customer's membership of a segment is kept as a *generation*: how many times it has
changed. Odd means member, even means not; entering turns generation g into g + 1.
``customer:segment:generation`` is therefore a deterministic id for each transition: a
worker that publishes a transition again after a crash publishes the same id, so
consumers dedupe exactly.

>>> from cdpulse.profile.model import Profile
>>> from cdpulse.segments.definitions import parse
>>> book = parse("segments: [{name: repeat, when: orders >= 2},"
...              "           {name: risky, when: churn_risk > 0.5}]")
>>> decision = decide(book, Profile(id="C-1", customer_id="C-1", orders=2), Rules(), None)
>>> sorted(decision.members), decision.errors      # no churn score yet: risky undecided
(['repeat'], ('risky',))
>>> before = {"vip": 1}                     # entered once: a member
>>> changes = transitions("C-1", before, {"shoe_lovers"}, ("vip", "shoe_lovers"), 1_000)
>>> [(t.segment, t.entered, t.id) for t in changes]
[('vip', False, 'C-1:vip:2'), ('shoe_lovers', True, 'C-1:shoe_lovers:1')]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.clv.lifetime import ClvSnapshot
from cdpulse.models.personas_learner import PersonaState
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.segments.compiler import ERROR, Values
from cdpulse.segments.definitions import SegmentBook
from cdpulse.segments.fields import FieldValues, ProfileRecord
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS
from cdpulse.segments.rfm import RfmScore, score_of
from cdpulse.segments.sketches import RfmSketches


@dataclass(frozen=True, slots=True)
class Transition:
    """A customer entered (``entered``) or left a segment at event time ``at_ms``.

    The small pure API other parts use (triggers: "win-back fires on entering at_risk").
    """

    customer_id: str
    segment: str
    entered: bool
    at_ms: int
    generation: int

    @property
    def id(self) -> str:
        """Deterministic: the same change has the same id however often it is published."""
        return f"{self.customer_id}:{self.segment}:{self.generation}"

    def document(self) -> dict[str, Any]:
        """The ``cdp.segments`` message (schema ``schemas/segment_transition.json``)."""
        return {
            "transition_id": self.id,
            "customer_id": self.customer_id,
            "segment": self.segment,
            "change": "entered" if self.entered else "left",
            "at": datetime.fromtimestamp(self.at_ms / 1000, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "generation": self.generation,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.document(), separators=(",", ":")).encode()


class Decision(NamedTuple):
    """Which segments a customer is in, which were decided at all, and which raised.

    ``decided`` is what stored generations are compared over (``transitions``): RFM
    segments are left out when they cannot be decided, so nobody leaves them then.
    ``errors`` are the segments whose condition could not be decided (a missing field):
    not a member, and counted.
    """

    members: frozenset[str]
    decided: tuple[str, ...]
    errors: tuple[str, ...]


def decide(
    book: SegmentBook,
    profile: Profile,
    rules: Rules,
    rfm: RfmScore | None,
    clv: ClvSnapshot | None = None,
    campaign: CampaignSnapshot | None = None,
    personas: PersonaState | None = None,
) -> Decision:
    """The segments ``profile`` belongs to, read at its own ``last_seen``.

    What the segment stage runs per changed customer (through ``changes``); ``rfm`` is
    its score against the newest sketches (``sketches.score_profile(profile)``; None
    without orders or sketches: then no RFM segment is decided, unless it has no
    orders). Equal to
    ``evaluate(book, profile_fields(profile, rules, rfm.fields()))``, and so to the
    rendered document's fields (tests hold all three together); fields are computed
    only when a condition reads them. ``clv``: the newest lifetime-value fit (fields
    ``clv`` and ``next_order_in_days``); ``campaign``: the newest campaign-response
    model (field ``propensity``); ``personas``: the newest personas (field ``persona``).
    """
    if rfm is None:
        values = FieldValues(profile, rules, None, clv, campaign, personas)
        return _decide(book, values, None, profile.orders)
    shared = _RFM_MAPS[rfm.r - 1][rfm.f - 1][rfm.m - 1]
    values = FieldValues(profile, rules, shared, clv, campaign, personas)
    return _decide(book, values, rfm.segment.id, profile.orders)


def evaluate(book: SegmentBook, record: Mapping[str, Any]) -> Decision:
    """The segments ``record`` (``fields.profile_fields``, or any mapping) belongs to.

    RFM segments are decided only when the record carries RFM scores (customers without
    orders have none and are in no RFM segment; before the first sketch exists nothing
    RFM is decided, so a restart does not make everyone leave). A condition that raises
    (a missing field) means "not a member", and is reported in ``errors``.
    """
    values = record.field_values if isinstance(record, ProfileRecord) else Values(record)
    rfm = values["rfm"]
    orders = values["orders"]
    segment = None if rfm is ERROR else str(rfm["segment"])
    return _decide(book, values, segment, 0 if orders is ERROR else orders)


def _decide(book: SegmentBook, values: Values, rfm_segment: str | None, orders: Any) -> Decision:
    members: list[str] = []
    if book.rfm and (rfm_segment is not None or not orders):
        decided = book.names
        if rfm_segment is not None:
            members.append(rfm_segment)
    else:
        decided = book.custom_names
    errors: tuple[str, ...] = ()
    checks = (
        book.checks if values.modelled else [(s.name, s.condition.decide) for s in book.segments]
    )
    for name, check in checks:
        verdict = check(values)
        if verdict is True:
            members.append(name)
        elif verdict is not False:
            errors += (name,)
    return Decision(frozenset(members), decided, errors)


# The ``rfm`` map of each score, [r - 1][f - 1][m - 1], built once and shared:
# conditions only read it.
_RFM_MAPS = tuple(
    tuple(tuple(score_of(r, f, m).fields() for m in range(1, 6)) for f in range(1, 6))
    for r in range(1, 6)
)


def transitions(
    customer_id: str,
    stored: Mapping[str, int],
    members: Iterable[str],
    decided: Iterable[str],
    at_ms: int,
) -> list[Transition]:
    """The changes from ``stored`` generations to ``members``, over the ``decided`` segments.

    In ``decided`` order. Most decisions change nothing, which is seen without a pass
    over every segment: then the members are exactly the segments stored as odd.
    """
    now = members if isinstance(members, (set, frozenset)) else set(members)
    kept = 0
    for segment, generation in stored.items():
        if generation % 2 == 1:
            if segment not in now:
                break
            kept += 1
    else:
        if kept == len(now):
            return []
    return [
        Transition(customer_id, s, s in now, at_ms, stored.get(s, 0) + 1)
        for s in decided
        if (s in now) != (stored.get(s, 0) % 2 == 1)
    ]


RFM_IDS: tuple[str, ...] = tuple(s.id for s in RFM_SEGMENTS)


def changes(
    book: SegmentBook,
    profile: Profile,
    rules: Rules,
    sketches: RfmSketches | None,
    clv: ClvSnapshot | None = None,
    campaign: CampaignSnapshot | None = None,
    personas: PersonaState | None = None,
    at_ms: int | None = None,
) -> tuple[list[Transition], tuple[str, ...]]:
    """The transitions a customer's newest state makes from the generations its profile
    holds (``Profile.segments``), and the segments whose condition could not be decided;
    dated ``at_ms`` (default: the profile's ``last_seen``).

    Saved with the profile by compare-and-set, the generations make each change happen
    once; anonymous visitors are not segmented (their profile merges into a customer's).
    """
    if profile.customer_id is None:
        return [], ()
    score = sketches.score_profile(profile) if book.rfm and sketches is not None else None
    decision = decide(book, profile, rules, score, clv, campaign, personas)
    at = profile.last_seen if at_ms is None else at_ms
    found = transitions(profile.id, profile.segments, decision.members, decision.decided, at)
    return found, decision.errors


def rfm_moves(profile: Profile, score: RfmScore | None, at_ms: int) -> list[Transition]:
    """The RFM transitions of a customer whose score moved with the base though they sent
    nothing (the RFM sweep): decided over the RFM segments only."""
    if profile.customer_id is None or score is None:
        return []
    return transitions(profile.id, profile.segments, {score.segment.id}, RFM_IDS, at_ms)


def enter(profile: Profile, found: Iterable[Transition]) -> None:
    """Record transitions in the profile's generations (then saved with it)."""
    for t in found:
        profile.segments[t.segment] = t.generation
