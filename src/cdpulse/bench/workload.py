"""The benchmark's input: the synthetic shop's event mix, serialised once.

Events are turned into (stream, key, JSON bytes) before any clock starts, so neither
the simulator nor the JSON encoder is part of what is measured; ``produce`` sends them.
orjson: the serialisation of ~1M events takes seconds instead of most of a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import orjson

from cdpulse.bench.produce import Row
from cdpulse.contract.topics import STREAM_OF_TYPE, Stream, Topics
from cdpulse.simulate import Shop

FIRST_DAYS = 30  # simulated days tried first; doubled until the shop has enough events


def topic_of(topics: Topics, stream: Stream) -> str:
    """The configured topic name of ``stream``."""
    return str(getattr(topics, stream))


@dataclass(frozen=True, slots=True)
class Record:
    """One event, ready to send."""

    stream: Stream
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Workload:
    """The events of one run."""

    records: list[Record]
    days: int

    def keys(self, count: int) -> list[str]:
        """The distinct message keys of the first ``count`` events: each has a profile."""
        return sorted({r.key.decode("utf-8") for r in self.records[:count]})

    def rows(self, topics: Topics, start: int, end: int) -> list[Row]:
        """Records ``start:end`` as (topic, key, value), for a producer process."""
        return [(topic_of(topics, r.stream), r.key, r.value) for r in self.records[start:end]]

    def topic_counts(self, topics: Topics) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            name = topic_of(topics, record.stream)
            counts[name] = counts.get(name, 0) + 1
        return counts


def shop_workload(events: int, customers: int, seed: int) -> Workload:
    """The first ``events`` events of a seeded shop of ``customers`` customers."""
    days = FIRST_DAYS
    while True:
        records: list[Record] = []
        for event in islice(Shop(customers, days, seed).events(), events):
            key = event.get("customer_id") or event["anonymous_id"]
            records.append(
                Record(
                    STREAM_OF_TYPE[event["type"]],
                    key.encode("utf-8"),
                    orjson.dumps(event),
                )
            )
        if len(records) == events:
            return Workload(records, days)
        if days >= 3650:
            raise ValueError(
                f"{customers} customers make only {len(records)} events in {days} days; "
                f"ask for more customers"
            )
        days *= 2
