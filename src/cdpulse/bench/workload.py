"""The benchmark's input: the synthetic shop's event mix, serialised once, sent to Kafka.

Events are turned into (stream, key, JSON bytes) before any clock starts, so neither
the simulator nor ``json.dumps`` is part of what is measured. The producer is
kafka-python with the settings of ``cdpulse.producer.Producer`` (acks=all, idempotent,
5 ms linger), so Kafka's CreateTime of a message is the moment ``send`` was called.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

from cdpulse.contract.topics import STREAM_OF_TYPE, Stream, Topics
from cdpulse.producer import Producer
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
                    json.dumps(event, separators=(",", ":")).encode("utf-8"),
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


def produce_all(
    producer: Producer,
    topics: Topics,
    records: Sequence[Record],
    advance: Callable[[int], None],
) -> float:
    """Send ``records`` as fast as the producer takes them; returns the seconds it took."""
    started = time.perf_counter()
    for i, record in enumerate(records, start=1):
        producer.send_raw(topic_of(topics, record.stream), record.value, record.key)
        if i % 1000 == 0:
            advance(1000)
    producer.flush()
    advance(len(records) % 1000)
    return time.perf_counter() - started


def produce_at_rate(
    producer: Producer,
    topics: Topics,
    records: Sequence[Record],
    rate: float,
    on_burst: Callable[[int], None] | None = None,
) -> tuple[int, float]:
    """Send ``records`` at ``rate`` per second: whatever is due, then sleep until the next.

    Returns (sent, seconds). ``on_burst(sent)`` is called after every burst.
    """
    started = time.perf_counter()
    sent = 0
    while sent < len(records):
        due = min(len(records), int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            record = records[sent]
            producer.send_raw(topic_of(topics, record.stream), record.value, record.key)
            sent += 1
        if on_burst is not None:
            on_burst(sent)
        pause = started + sent / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush()
    return sent, time.perf_counter() - started
