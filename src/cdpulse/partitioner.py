"""Which partition Kafka gives a key: the default (Java-compatible) murmur2 partitioner.

Every producer (kafka-python, aiokafka, the JVM clients) hashes a key this way, so a
customer's events land on the same partition number of each input topic; the due-time
shards, the outlet and in-process replays use the same function to agree with them.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions
