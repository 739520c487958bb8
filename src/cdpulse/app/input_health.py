"""The input topics' health as the dashboard shows it, read from Kafka by the api.

What the engine already records, read where it is kept, so every api process answers
the same without asking a worker: the input topics' end offsets (messages received),
the workers' committed offsets (``CDPULSE_APP_ID``'s group: what is not committed yet is
the consumer lag), the newest message's broker timestamp per topic (freshness: how long
ago something last arrived), and the dead-letter topic, whose every record names its
reason and input topic (rejections by reason; as far back as the topic's retention).

The dead-letter topic is read incrementally, at most ``DEAD_LETTERS_PER_READ`` records a
read, so a large one is counted over several reads (``dead_letters_pending`` says how
many are left); nothing is committed (a consumer in no group). Blocking kafka-python
calls: the api runs ``read`` in a thread.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from cdpulse.connections import kafka_options
from cdpulse.contract.topics import Topics
from cdpulse.settings import Settings

DEAD_LETTERS_PER_READ = 50_000
POLL_MS = 500
UNREADABLE = "(unreadable dead letter)"


class InputHealth:
    """Kafka clients of one api process, and the dead letters counted so far."""

    def __init__(self, settings: Settings, topics: Topics) -> None:
        self.group = settings.app_id  # the workers' consumer group (app/base.py)
        self.inputs = list(topics.inputs)
        self.dead_letter = topics.dead_letter
        self.options = {
            "bootstrap_servers": settings.kafka_bootstrap.split(","),
            "client_id": f"{settings.app_id}-dashboard",
            **kafka_options(settings),
        }
        self._admin: KafkaAdminClient | None = None
        self._latest: KafkaConsumer | None = None
        self._dead: KafkaConsumer | None = None
        self.rejected: Counter[tuple[str, str]] = Counter()  # (input topic, reason)

    def read(self) -> dict[str, Any]:
        """Per input topic: messages, lag, newest arrival; dead letters by reason."""
        if self._admin is None:
            self._admin = KafkaAdminClient(**self.options)
            self._latest = KafkaConsumer(group_id=None, enable_auto_commit=False, **self.options)
            self._dead = KafkaConsumer(group_id=None, enable_auto_commit=False, **self.options)
        assert self._latest is not None and self._dead is not None
        partitions = _partitions(self._latest, self.inputs)
        ends = {tp: int(n) for tp, n in self._latest.end_offsets(partitions).items()}
        committed = self._committed()
        newest = self._newest(ends)
        pending = self._count_dead_letters()
        rejected: dict[str, int] = Counter()
        for (_, reason), n in self.rejected.items():
            rejected[reason] += n
        topics = []
        for topic in self.inputs:
            mine = {tp: end for tp, end in ends.items() if tp.topic == topic}
            done = sum(min(committed.get(tp, 0), end) for tp, end in mine.items())
            received = sum(mine.values())
            last = newest.get(topic)
            topics.append(
                {
                    "topic": topic,
                    "messages": received,
                    "lag": received - done,
                    "rejected": sum(n for (t, _), n in self.rejected.items() if t == topic),
                    "newest_received": last,
                    "seconds_since_newest": None
                    if last is None
                    else round(max(0.0, time.time() - last / 1000), 1),
                }
            )
        return {
            "group": self.group,
            "topics": topics,
            "rejections": dict(sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))),
            "dead_letters_pending": pending,
        }

    def _committed(self) -> dict[TopicPartition, int]:
        assert self._admin is not None
        try:
            offsets = self._admin.list_group_offsets(self.group).get(self.group, {})
        except KafkaError:  # a group the coordinator does not know yet has committed nothing
            return {}
        return {tp: int(meta.offset) for tp, meta in offsets.items() if meta.offset > 0}

    def _newest(self, ends: dict[TopicPartition, int]) -> dict[str, int]:
        """The broker timestamp (ms) of each topic's newest message: the last one of each
        partition, read where it lies."""
        consumer = self._latest
        assert consumer is not None
        held = [tp for tp, end in ends.items() if end > 0]
        if not held:
            return {}
        consumer.assign(held)
        for tp in held:
            consumer.seek(tp, ends[tp] - 1)
        newest: dict[str, int] = {}
        missing = set(held)
        deadline = time.monotonic() + 5
        while missing and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=POLL_MS).items():
                missing.discard(tp)
                for record in records:
                    newest[tp.topic] = max(newest.get(tp.topic, 0), int(record.timestamp))
        return newest

    def _count_dead_letters(self) -> int:
        """Count the dead letters not counted yet; how many are left for the next read."""
        assert self._dead is not None

        def count(raw: bytes | None) -> None:
            self.rejected[_rejection(raw)] += 1

        return tail(self._dead, self.dead_letter, DEAD_LETTERS_PER_READ, count)

    def close(self) -> None:
        for client in (self._admin, self._latest, self._dead):
            if client is not None:
                client.close()


def tail(
    consumer: KafkaConsumer, topic: str, budget: int, each: Callable[[bytes | None], None]
) -> int:
    """Hand ``each`` the values of ``topic`` not read yet by ``consumer`` (a consumer in no
    group, kept for this topic alone), at most ``budget`` of them; how many are left."""
    partitions = _partitions(consumer, [topic])
    if not partitions:
        return 0
    if set(consumer.assignment()) != set(partitions):
        # A new partition is read from its beginning, the others on from where they were.
        was = {tp: consumer.position(tp) for tp in consumer.assignment()}
        consumer.assign(partitions)
        for tp in partitions:
            if tp in was:
                consumer.seek(tp, was[tp])
            else:
                consumer.seek_to_beginning(tp)
    ends = {tp: int(n) for tp, n in consumer.end_offsets(partitions).items()}
    while budget > 0 and any(consumer.position(tp) < end for tp, end in ends.items()):
        batches = consumer.poll(timeout_ms=POLL_MS, max_records=min(budget, 5000))
        if not batches:
            break
        for records in batches.values():
            for record in records:
                each(record.value)
                budget -= 1
    return sum(max(0, end - consumer.position(tp)) for tp, end in ends.items())


def _partitions(consumer: KafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    out = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic) or set()
        out += [TopicPartition(topic, p) for p in sorted(ids)]
    return out


def _rejection(raw: bytes | None) -> tuple[str, str]:
    """(input topic, reason) of a dead letter (``contract.dead_letter``)."""
    try:
        letter = json.loads(raw or b"")
        return str(letter["topic"]), str(letter["reason"])
    except (ValueError, KeyError, TypeError):
        return "", UNREADABLE
