"""Who is in which segment, and the transitions (enter, leave) a profile change causes.

A customer's membership of a segment is kept as a *generation*: how many times it has
changed. Odd means member, even means not; entering turns generation g into g + 1.
``customer:segment:generation`` is therefore a deterministic id for each transition: a
worker that publishes a transition again after a crash publishes the same id, so
consumers dedupe exactly.

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
from typing import Any

from cdpulse.segments.definitions import SegmentBook
from cdpulse.segments.expressions import EvaluationError
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS


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


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Which segments a record is in, which were decided at all, and which raised."""

    members: frozenset[str]
    decided: tuple[str, ...]
    errors: tuple[str, ...]


def evaluate(book: SegmentBook, record: Mapping[str, Any]) -> Evaluation:
    """The segments ``record`` (``fields.profile_fields``) belongs to.

    RFM segments are decided only when the record carries RFM scores (customers without
    orders have none and are in no RFM segment; before the first sketch exists nothing
    RFM is decided, so a restart does not make everyone leave). A condition that raises
    (a missing field) means "not a member", and is reported in ``errors``.
    """
    members: set[str] = set()
    decided: list[str] = []
    errors: list[str] = []
    if book.rfm and ("rfm" in record or not record.get("orders")):
        decided += [s.id for s in RFM_SEGMENTS]
        if "rfm" in record:
            members.add(str(record["rfm"]["segment"]))
    for segment in book.segments:
        decided.append(segment.name)
        try:
            if segment.condition.matches(record):
                members.add(segment.name)
        except EvaluationError:
            errors.append(segment.name)
    return Evaluation(frozenset(members), tuple(decided), tuple(errors))


def transitions(
    customer_id: str,
    stored: Mapping[str, int],
    members: Iterable[str],
    decided: Iterable[str],
    at_ms: int,
) -> list[Transition]:
    """The changes from ``stored`` generations to ``members``, over the ``decided`` segments."""
    now = set(members)
    out = []
    for segment in decided:
        generation = stored.get(segment, 0)
        was_member = generation % 2 == 1
        if (segment in now) != was_member:
            out.append(Transition(customer_id, segment, not was_member, at_ms, generation + 1))
    return out


def encode_pending(changes: Iterable[Transition]) -> str:
    """One customer's staged transitions as stored beside its generations (in order)."""
    return json.dumps(
        [[t.segment, t.entered, t.at_ms, t.generation] for t in changes], separators=(",", ":")
    )


def decode_pending(customer_id: str, text: str) -> tuple[Transition, ...]:
    return tuple(
        Transition(customer_id, str(segment), bool(entered), int(at), int(generation))
        for segment, entered, at, generation in json.loads(text)
    )


def by_customer(changes: Iterable[Transition]) -> dict[str, list[Transition]]:
    """Transitions grouped per customer, each group in its original order."""
    out: dict[str, list[Transition]] = {}
    for t in changes:
        out.setdefault(t.customer_id, []).append(t)
    return out
