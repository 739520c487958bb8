"""``Producer``: validate an event, route it to its topic, key it by customer, send it.

Built on kafka-python with ``acks=all`` and idempotence, so a retried send neither
loses nor duplicates a message within the producer's session. Typical use::

    with Producer.from_settings(get_settings()) as producer:
        producer.send(event)  # raises ProducerRejected, naming the field, when invalid
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer

from cdpulse.connections import kafka_options
from cdpulse.contract.topics import Topics
from cdpulse.contract.validation import Rejection, decode
from cdpulse.kafka_admin import ensure_topics
from cdpulse.settings import Settings


class ProducerRejected(ValueError):
    """The event did not pass validation and was not sent."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


class Producer:
    """Validating, routing producer for cdpulse events."""

    def __init__(self, kafka: KafkaProducer, settings: Settings) -> None:
        self.kafka = kafka
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.sent = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, create_topics: bool = True) -> Producer:
        if create_topics:
            ensure_topics(settings)
        kafka = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id=f"{settings.app_id}-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            batch_size=256 * 1024,
            compression_type=None,
            **kafka_options(settings),
        )
        return cls(kafka, settings)

    def check(self, event: dict[str, Any] | bytes) -> tuple[bytes, str, str]:
        """Validate; returns (value, topic, key) or raises ProducerRejected."""
        raw = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        result = decode(
            raw,
            now=datetime.now(UTC),
            max_bytes=self.settings.max_event_bytes,
            max_future_skew=timedelta(seconds=self.settings.max_future_skew_seconds),
        )
        if isinstance(result, Rejection):
            raise ProducerRejected(result)
        return raw, self.topics.for_type(result.type), result.key

    def send(self, event: dict[str, Any] | bytes) -> str:
        """Validate and send one event (a dict, or its raw JSON bytes); returns the topic."""
        raw, topic, key = self.check(event)
        self.kafka.send(topic, value=raw, key=key.encode("utf-8"))
        self.sent += 1
        return topic

    def send_raw(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Send bytes unchecked: only for tests and tools that feed deliberately bad input."""
        self.kafka.send(topic, value=value, key=key)

    def flush(self, timeout: float | None = None) -> None:
        self.kafka.flush(timeout=timeout)

    def close(self) -> None:
        self.kafka.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.close()
