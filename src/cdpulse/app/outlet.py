"""The pipeline's outlet on Kafka: a batch's records sent as record batches, then awaited.

faust's ``topic.send`` costs ~15 µs per record before the Kafka client sees it, and the
client's own ``send`` partitions and queues one record at a time. A batch's records are
instead grouped by topic and partition here (Kafka's default partitioner, murmur2 of the
key, remembered per key) and appended to aiokafka record batches, one ``send_batch`` per
partition; the method then waits until the broker acknowledged all of them (acks=all),
so the pipeline writes Redis only after its records are safe. The records of a bundled
stream (``outputs.BUNDLED``) go as one bundle per partition (``outputs.bundles``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from typing import Any

import faust
from kafka.partitioner.default import murmur2

from cdpulse.pipeline.outputs import BUNDLED, Outputs, Record, Stream, bundles

KEYS_REMEMBERED = 100_000


class KafkaOutlet:
    """Publishes ``Outputs`` through the faust app's producer."""

    def __init__(self, app: faust.App, topics: dict[Stream, str]) -> None:
        self.app = app
        self.topics = topics
        self._partitions: dict[str, int] = {}
        self._partition_of: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._round_robin = itertools.count()

    def _producer(self) -> Any:
        # faust's producer owns the aiokafka client (its configuration, credentials and
        # lifecycle); only its record-batch API is used here.
        producer: Any = self.app.producer
        return producer._ensure_producer()

    async def publish(self, outputs: Outputs) -> None:
        if not len(outputs):
            return
        producer = self._producer()
        futures = []
        for stream, records in outputs.records.items():
            topic = self.topics[stream]
            partitions = await self._count(producer, topic)
            grouped: dict[int, list[Record]] = {}
            for record in records:
                grouped.setdefault(self._partition(topic, record.key, partitions), []).append(
                    record
                )
            for partition, group in grouped.items():
                if stream in BUNDLED:
                    values = [r.value for r in group if r.value is not None]
                    group = [Record(None, bundle) for bundle in bundles(values)]
                futures += await self._send(producer, topic, partition, group)
        if futures:
            await asyncio.gather(*futures)

    async def _count(self, producer: Any, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            await producer.client._wait_on_metadata(topic)
            count = len(producer.client.cluster.partitions_for_topic(topic))
            self._partitions[topic] = count
        return count

    def _partition(self, topic: str, key: bytes | None, partitions: int) -> int:
        if key is None:
            return next(self._round_robin) % partitions
        remembered = self._partition_of.get((topic, key))
        if remembered is None:
            # Kafka's default partitioner, so producers of other languages agree.
            remembered = (murmur2(key) & 0x7FFFFFFF) % partitions
            self._partition_of[(topic, key)] = remembered
            if len(self._partition_of) > KEYS_REMEMBERED:
                self._partition_of.popitem(last=False)
        return remembered

    async def _send(
        self, producer: Any, topic: str, partition: int, records: list[Record]
    ) -> list[Any]:
        futures = []
        batch = producer.create_batch()
        for record in records:
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    raise ValueError(
                        f"a record of {len(record.value or b'')} bytes does not fit a batch "
                        f"of {topic}: raise CDPULSE_PRODUCE_BATCH_BYTES (and the broker's "
                        "message.max.bytes with it)"
                    )
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
