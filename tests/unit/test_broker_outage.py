"""A broker outage fails a publish, and the batch is backed off and retried, never skipped.

A publish the broker does not acknowledge within ``CDPULSE_PRODUCE_TIMEOUT_SECONDS``
fails (aiokafka expires its record batches then), and whatever aiokafka raises for it is
infrastructure to the one retry loop (``app/base.py`` ``retrying``): counted as a Kafka
error and retried, not taken for a bug. ``tests/chaos/test_trigger_delivery.py`` kills a
real broker under a worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import REGISTRY

from cdpulse.app.base import faust_app, retrying
from cdpulse.settings import Settings


def test_a_publish_waits_for_its_acknowledgement_as_long_as_the_setting_says() -> None:
    app = faust_app(Settings(kafka_bootstrap="127.0.0.1:1", produce_timeout_seconds=3), "worker")

    async def client() -> tuple[int, float]:
        # aiokafka builds its producer inside a running loop; it connects only in start().
        producer = app.producer._new_producer()  # type: ignore[attr-defined]
        return producer._request_timeout_ms, producer._message_accumulator._batch_ttl

    # The produce requests' timeout, and the age at which an unacknowledged batch fails.
    assert asyncio.run(client()) == (3000, 3.0)


def test_a_role_s_consumer_watches_its_group_coordination_as_the_settings_say() -> None:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:1", coordinator_check_seconds=2, coordinator_stall_seconds=20
    )
    app: Any = faust_app(settings, "worker")
    # Read by the consumer thread when it starts (adapters/kafka/consumer.py).
    assert (app.coordinator_check_seconds, app.coordinator_stall_seconds) == (2, 20)


@pytest.mark.parametrize(
    "error",
    [
        NodeNotReadyError,  # what a killed broker gives (tests/chaos/test_trigger_delivery.py)
        KafkaConnectionError,
        KafkaTimeoutError,
        RequestTimedOutError,
        NotLeaderForPartitionError,
        LeaderNotAvailableError,
        UnknownTopicOrPartitionError,
    ],
)
def test_what_a_publish_raises_in_a_broker_outage_is_retried_as_infrastructure(
    error: type[Exception],
) -> None:
    attempts: list[int] = []
    failures: list[BaseException] = []

    async def publish() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise error()
        return "acknowledged"

    def count(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    kafka_errors = count("cdpulse_kafka_errors_total")
    batch_failures = count("cdpulse_batch_failures_total")
    assert asyncio.run(retrying(publish, on_failure=failures.append)) == "acknowledged"
    assert len(attempts) == 2 and [type(f) for f in failures] == [error]
    assert count("cdpulse_kafka_errors_total") == kafka_errors + 1
    assert count("cdpulse_batch_failures_total") == batch_failures
