"""What a batch publishes, by stream: encoded records, ready for the outlet.

Every record a batch sends is published before the batch's write and awaited: a worker
that dies in between recomputes the same records from the same events and sends them
again (at least once, each with the id a consumer dedupes on: the event id, the example's
customer and day, the transition or trigger id), and one that dies after the write has
nothing left to send. Nothing is lost, nothing is staged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


class Stream(Enum):
    """An output topic, by what it carries (``contract.topics.Topics`` names it)."""

    DEAD_LETTER = "dead_letter"
    TRAINING = "training"
    RECO_EVENTS = "reco_events"
    SEGMENTS = "segments"
    TRIGGERS = "triggers"
    OFFER_REWARDS = "offer_rewards"
    RECOMMENDATIONS = "recommendations"
    AUDIT = "audit"
    ERASURES = "erasures"  # the erasure ledger: published before anything is erased

    # Members are singletons: identity hashing, in C, instead of Enum's ``__hash__`` (a
    # Python call per record a batch adds).
    __hash__ = object.__hash__


class Record(NamedTuple):
    """One message: a key (None: round robin) and a value (None: a tombstone)."""

    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Outputs:
    """The records of one batch, in the order they are to be sent per stream."""

    records: dict[Stream, list[Record]] = field(default_factory=dict)

    def add(self, stream: Stream, key: bytes | None, value: bytes | None) -> None:
        records = self.records.get(stream)
        if records is None:
            records = self.records[stream] = []
        records.append(Record(key, value))

    def extend(self, other: Outputs) -> None:
        for stream, records in other.records.items():
            self.records.setdefault(stream, []).extend(records)

    def count(self, stream: Stream) -> int:
        return len(self.records.get(stream, ()))

    def __len__(self) -> int:
        return sum(len(r) for r in self.records.values())
