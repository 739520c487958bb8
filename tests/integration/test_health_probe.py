"""The Kafka health probe on the session's real broker: a round trip that names no topic.

``KafkaProbe`` answers /healthz and /readyz from a background round every second in every
role, so what it asks must cost the broker and the role next to nothing however many
topics the cluster holds. These check that it still answers what it must: reachable
while the broker answers, unreachable where none listens, and the metadata it asks for
is the brokers' only.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.protocol.metadata import MetadataRequest

from cdpulse.ops.health import KafkaProbe
from tests.integration.conftest import KAFKA_PORT, free_port


def test_probe_says_reachable_while_the_broker_answers(stack: None) -> None:
    async def probe() -> list[bool]:
        kafka = KafkaProbe(f"127.0.0.1:{KAFKA_PORT}")
        answers = [await kafka.reachable() for _ in range(3)]  # the first one bootstraps
        assert kafka._client is not None
        await kafka._client.close()
        return answers

    assert asyncio.run(probe()) == [True, True, True]


def test_probe_says_unreachable_where_no_broker_listens() -> None:
    async def probe() -> bool:
        return await KafkaProbe(f"127.0.0.1:{free_port()}").reachable()

    assert asyncio.run(probe()) is False


def test_the_probes_request_names_no_topic(stack: None) -> None:
    """The request the probe sends (``MetadataRequest([])``) is answered with the brokers
    and no topic, while the cluster holds topics: None would have asked for every one."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}")
    try:
        admin.create_topics([NewTopic(f"probe-{uuid.uuid4().hex[:8]}", 1, 1)], timeout_ms=15000)
    finally:
        admin.close()

    async def ask() -> tuple[int, int, int]:
        kafka = KafkaProbe(f"127.0.0.1:{KAFKA_PORT}")
        assert await kafka.reachable()
        client = kafka._client
        assert client is not None
        try:
            node = client.get_random_node()
            none = await client.send(node, MetadataRequest([]))
            every = await client.fetch_all_metadata()
            return len(none.brokers), len(none.topics), len(every.topics())
        finally:
            await client.close()

    brokers, named, all_topics = asyncio.run(ask())
    assert brokers >= 1
    assert named == 0
    assert all_topics >= 1
