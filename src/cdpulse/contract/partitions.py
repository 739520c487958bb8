"""Which partition Kafka gives a key: the default (Java-compatible) murmur2 partitioner.

Every producer (kafka-python, aiokafka, librdkafka's ``murmur2_random``, the JVM clients)
hashes a key this way, so a customer's events land on the same partition number of each
input topic; the due-time shards, the outlet, the recommender's shards and in-process
replays use the same function to agree with them. Part of the wire contract: pure code,
tested against kafka-python's own hash.
"""

from __future__ import annotations


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length % 4
    end = length - tail
    if tail >= 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``.

    >>> partition_of("C-1", 1), [partition_of(c, 4) for c in ("C-1", "C-2", "C-3")]
    (0, [3, 2, 3])
    """
    if partitions < 1:
        raise ValueError(f"partition_of: partitions must be >= 1, got {partitions}")
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
