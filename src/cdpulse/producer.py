"""``Producer``: validate an event, protect its personal traits, route it to its topic,
key it by customer, send it.

Personal traits leave exactly as the collector sends them (``privacy.data_keys.
protect_traits``, the one rule both follow): as pseudonyms, sealed beside them with the
customer's data key from Redis, never in clear. So the producer needs Redis
(``CDPULSE_REDIS_URL``, the roles' prefix) and the roles' ``CDPULSE_PSEUDONYM_KEY`` when it
sends identify events with personal traits; other events never touch Redis.

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

from cdpulse.adapters.data_keys import BlockingDataKeys
from cdpulse.connections import kafka_options
from cdpulse.contract.custom_schemas import CustomSchemas
from cdpulse.contract.topics import Topics
from cdpulse.contract.validation import Rejection, decode
from cdpulse.kafka_admin import ensure_topics
from cdpulse.privacy.data_keys import protect_traits, sealing_customer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.settings import Settings

# Why an event with personal traits is refused when no pseudonym key is set.
NO_PSEUDONYM_KEY = "no_pseudonym_key"


class ProducerRejected(ValueError):
    """The event did not pass validation and was not sent."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


class Producer:
    """Validating, routing producer for cdpulse events."""

    def __init__(
        self, kafka: KafkaProducer, settings: Settings, data_keys: BlockingDataKeys
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.traits = TraitPolicy.from_settings(settings)
        self.data_keys = data_keys
        # The operators' custom event schemas: a violating event is refused before it is
        # sent, as the collector and the worker refuse it (CustomSchemaError at start).
        self.schemas = CustomSchemas.from_settings(settings)
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
        return cls(kafka, settings, BlockingDataKeys.from_settings(settings))

    def check(self, event: dict[str, Any] | bytes) -> tuple[bytes, str, str]:
        """Validate and protect; returns (value, topic, key) or raises ProducerRejected."""
        raw = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        result = decode(
            raw,
            now=datetime.now(UTC),
            max_bytes=self.settings.max_event_bytes,
            max_future_skew=timedelta(seconds=self.settings.max_future_skew_seconds),
            schemas=self.schemas,
        )
        if isinstance(result, Rejection):
            raise ProducerRejected(result)
        if result.type == "identify":
            raw = self._protected(raw, result.event_id)
        return raw, self.topics.for_type(result.type), result.key

    def _protected(self, raw: bytes, event_id: str) -> bytes:
        """A valid identify event's bytes with its personal traits pseudonymised and sealed
        (unchanged when it has none)."""
        obj = json.loads(raw)
        customer = sealing_customer(obj, self.traits)
        if customer is None:
            return raw
        if not self.settings.pseudonym_key.get_secret_value():
            # Pseudonyms under an empty key would be guessable and match nothing the
            # roles compute: refuse rather than send the value either way.
            raise ProducerRejected(
                Rejection(
                    NO_PSEUDONYM_KEY,
                    f"event {event_id}: personal traits need CDPULSE_PSEUDONYM_KEY (the "
                    "roles' key) to travel as pseudonyms; set it, or leave the traits out",
                    event_id,
                )
            )
        pseudonym = self.traits.pseudonymizer.of_id(customer)
        key = self.data_keys.unless_erased(customer, pseudonym)
        protected = protect_traits(obj, self.traits, key)
        # ASCII escapes, as the collector sends: any parsed string stays encodable.
        return json.dumps(protected).encode("ascii")

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
        self.data_keys.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.close()
