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
    CAMPAIGN_TRAINING = "campaign_training"
    PERSONA_TRAINING = "persona_training"
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


# Streams whose records the outlet sends in bundles (``bundles``): one Kafka record per
# partition and batch holding the batch's records for that partition as a JSON array, in
# order. Item events are most of what a worker sends and each was a message of its own:
# ~13 µs of CPU per message on the learner's consumer path alone, for records only the
# learner reads and always a batch at a time. A bundle is applied whole or not at all
# (one offset), so redelivery stays exact.
BUNDLED = frozenset({Stream.RECO_EVENTS})
BUNDLE_BYTES = 256 * 1024  # a bundle's size at most (unless one record alone is larger)


def bundles(values: list[bytes], limit: int = BUNDLE_BYTES) -> list[bytes]:
    """``values`` (each one JSON document) as JSON arrays of at most ``limit`` bytes, in
    order; a value longer than ``limit`` is a bundle of its own.

    >>> bundles([b'{"a":1}', b'{"b":2}', b'{"c":3}'], limit=17)
    [b'[{"a":1},{"b":2}]', b'[{"c":3}]']
    """
    out: list[bytes] = []
    part: list[bytes] = []
    size = 1  # the closing bracket; each value adds itself and a comma or the opening one
    for value in values:
        if part and size + len(value) + 1 > limit:
            out.append(b"[" + b",".join(part) + b"]")
            part, size = [], 1
        part.append(value)
        size += len(value) + 1
    if part:
        out.append(b"[" + b",".join(part) + b"]")
    return out


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
