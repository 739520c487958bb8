"""Rebuild every profile from the Kafka history into an empty Redis key prefix.

Kafka keeps the input messages; Redis keeps what the worker made of them. When Redis
lost data, or to check the live profiles, ``cdpulse rebuild`` replays the three input
topics from their first retained offset through the same profile pipeline and Redis
state store into a key prefix of its own.

The history is read by consumers that join no group: they commit nothing and take no
partitions away from the workers. They stop at the end offsets seen at the start.
Messages of all partitions are merged in Kafka timestamp order, so the processor sees
them in about the order the worker did: the profile rules do not depend on order, but
their stated limits (late events within the newest 32 sessions, client duplicates within
the newest 64 event ids, the first link of a visitor wins) assume an order close to
arrival, which reading one whole partition after another would not give.

The rebuild is exact only over a complete history: a partition whose first retained
offset is above 0 lost its oldest messages to retention (``History.truncated``). It
rebuilds profiles, not the online models' churn scores and pending labels: those depend
on the model snapshot of their day, and the worker scores a profile again when it next
writes it.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from cdpulse.contract.message import Message
from cdpulse.pipeline.batch import ProfilePipeline

# Seconds without a single fetched record (while some are due) before giving up.
IDLE_TIMEOUT = 60.0


class RebuildError(RuntimeError):
    """The history cannot be read or the target cannot be written; the message says why."""


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """The offsets of one partition a rebuild reads: ``start`` inclusive, ``end`` exclusive."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


class _PartitionReader:
    """One partition on a consumer of its own, which fetches only when asked to.

    A consumer per partition, rather than one pausing the partitions that are ahead in
    time: kafka-python 3.0.12 never fetches a paused partition again after ``resume``
    when its parked records could not be restored at once (``Fetcher.fetched_records``
    restores them only while no other partition's records sit in its in-line slot).
    """

    def __init__(self, consumer: KafkaConsumer, span: PartitionRange, idle_timeout: float) -> None:
        self.consumer = consumer
        self.span = span
        self.tp = TopicPartition(span.topic, span.partition)
        self.idle_timeout = idle_timeout
        self.buffer: deque[Any] = deque()
        consumer.assign([self.tp])
        consumer.seek(self.tp, span.start)

    def head(self) -> Any | None:
        """The next record, fetched when none is buffered; None past the end."""
        idle_since = time.monotonic()
        while not self.buffer:
            if self.consumer.position(self.tp) >= self.span.end:
                return None
            polled = self.consumer.poll(timeout_ms=500).get(self.tp, [])
            self.buffer.extend(r for r in polled if r.offset < self.span.end)
            if polled:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.idle_timeout:
                raise RebuildError(
                    f"no message from Kafka for {self.idle_timeout:.0f}s while "
                    f"{self.span.topic}:{self.span.partition} still had messages to read "
                    f"(at offset {self.consumer.position(self.tp)} of {self.span.end}); "
                    "is the broker up?"
                )
        return self.buffer[0]


class History:
    """The input topics, first retained offset to the end offsets at start, in time order.

    ``connect`` makes a consumer that joins no group; the history opens one to read the
    partitions and their offsets, and one per partition to read it. Close it when done.
    ``since_ms``: from the first record of each partition whose Kafka timestamp is at or
    after it instead (``cdpulse audit --since``).
    """

    def __init__(
        self,
        connect: Callable[[], KafkaConsumer],
        topics: Sequence[str],
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        since_ms: int | None = None,
    ) -> None:
        self._connect = connect
        self._idle_timeout = idle_timeout
        self._readers: list[_PartitionReader] = []
        probe = connect()
        try:
            partitions: list[TopicPartition] = []
            for topic in topics:
                numbers = probe.partitions_for_topic(topic)
                if not numbers:
                    raise RebuildError(
                        f"topic {topic!r} does not exist; check that CDPULSE_TOPIC_* and "
                        "CDPULSE_KAFKA_BOOTSTRAP name the topics and cluster the workers read"
                    )
                partitions += [TopicPartition(topic, p) for p in sorted(numbers)]
            starts = probe.beginning_offsets(partitions)
            ends = probe.end_offsets(partitions)
            if since_ms is not None:
                # From the first record whose Kafka timestamp is at or after since_ms;
                # a partition with none reads nothing.
                found = probe.offsets_for_times({tp: since_ms for tp in partitions})
                starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in starts}
        finally:
            probe.close()
        self.ranges = [
            PartitionRange(tp.topic, tp.partition, starts[tp], ends[tp]) for tp in partitions
        ]

    @property
    def total(self) -> int:
        """Messages to read (an upper bound when the topics hold transaction markers)."""
        return sum(r.size for r in self.ranges)

    @property
    def truncated(self) -> list[PartitionRange]:
        """Partitions whose oldest messages retention already deleted."""
        return [r for r in self.ranges if r.start > 0]

    def batches(self, size: int) -> Iterator[list[Message]]:
        """The history in lists of at most ``size`` messages."""
        batch: list[Message] = []
        for message in self.messages():
            batch.append(message)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def messages(self) -> Iterator[Message]:
        """Every message once, merged across partitions by (timestamp, topic, partition, offset).

        Each partition is in offset order already, so a heap of the partitions' next
        records is enough.
        """
        self.close()
        self._readers = [
            _PartitionReader(self._connect(), span, self._idle_timeout)
            for span in self.ranges
            if span.size
        ]
        heads: list[tuple[int, str, int, int, int]] = []
        for index in range(len(self._readers)):
            self._push(heads, index)
        while heads:
            *_, index = heapq.heappop(heads)
            record = self._readers[index].buffer.popleft()
            yield Message(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                record.timestamp / 1000 if record.timestamp >= 0 else None,
            )
            self._push(heads, index)

    def _push(self, heads: list[tuple[int, str, int, int, int]], index: int) -> None:
        record = self._readers[index].head()
        if record is not None:
            key = (max(record.timestamp, 0), record.topic, record.partition, record.offset, index)
            heapq.heappush(heads, key)

    def close(self) -> None:
        """Close the partitions' consumers."""
        for reader in self._readers:
            reader.consumer.close()
        self._readers = []

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RebuildReport:
    """What a rebuild read and wrote."""

    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    merges: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def rebuild(
    history: History,
    pipeline: ProfilePipeline,
    batch_size: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> RebuildReport:
    """Apply the whole history to ``pipeline``'s store; ``on_batch`` gets each batch's size.

    Dead letters are counted, not published again: the worker published them when the
    messages first arrived.
    """
    report = RebuildReport()
    started = time.monotonic()
    for batch in history.batches(batch_size):
        result = await pipeline.run(batch)
        counts = result.work.counts
        report.messages += len(batch)
        report.applied += counts["applied"]
        report.duplicates += counts["duplicates"]
        report.merges += counts["merges"]
        if result.decoded is not None:
            report.rejected.update(result.decoded.rejected)
        on_batch(len(batch))
    report.seconds = time.monotonic() - started
    return report
