"""The ceiling: a bare consumer that reads the run's messages and only decodes them.

It uses aiokafka, the client faust itself consumes with, and does ``json.loads`` per
message and nothing else, so the engine's throughput as a share of this one says
what everything above the Kafka client (faust, validation, profiles, Redis) costs.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class CeilingResult:
    """What the bare consumer did."""

    messages: int
    seconds: float  # first fetched batch to the last message decoded
    cpu_seconds: float  # this process, over the same span

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


async def _consume(
    bootstrap: str, partitions: list[tuple[str, int]], expected: int
) -> CeilingResult:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="cdpulse-bench-ceiling",
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for topic, p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        decoded = 0
        started = cpu_started = 0.0
        while decoded < expected:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                continue
            if not started:
                started, cpu_started = time.perf_counter(), time.process_time()
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                decoded += len(records)
        return CeilingResult(
            decoded, time.perf_counter() - started, time.process_time() - cpu_started
        )
    finally:
        await consumer.stop()


def ceiling(
    bootstrap: str, partitions: list[tuple[str, int]], expected: int, timeout: float = 600
) -> CeilingResult:
    """Read ``expected`` messages from the start of ``partitions``, decoding each."""
    return asyncio.run(asyncio.wait_for(_consume(bootstrap, partitions, expected), timeout))
