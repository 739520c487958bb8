"""A consumed Kafka message, independent of the client library that read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One raw message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # Kafka's append time, epoch seconds

    @property
    def source(self) -> str:
        """``topic:partition:key``: messages sharing it arrive in offset order."""
        key = self.key.decode("utf-8", "backslashreplace") if self.key else ""
        return f"{self.topic}:{self.partition}:{key}"

    @property
    def partition_name(self) -> str:
        return f"{self.topic}:{self.partition}"
