"""Three brokers: cdpulse's topics get three replicas and min.insync.replicas 2, and a
broker killed with SIGKILL loses no acknowledged record: acks=all writes still succeed,
the consumer group goes on, and the broker rejoins every partition's ISR on restart."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from cdpulse.contract.topics import Topics
from cdpulse.kafka_admin import ensure_topics, topic_specs
from cdpulse.producer import Producer
from cdpulse.settings import ConfigurationError, Settings
from tests.integration.conftest import wait_until
from tests.scale.cluster import KafkaCluster

T0 = int(time.time() * 1000) - 3_600_000
RECORDS = 200  # per round: before the kill, then with one broker down


@pytest.fixture
def settings(cluster: KafkaCluster) -> Settings:
    name = f"k3{uuid.uuid4().hex[:8]}"
    return Settings(
        kafka_bootstrap=cluster.bootstrap,
        app_id=f"cdpulse-{name}",
        pseudonym_key="scale-test-key",
        topic_replication=3,
        topic_min_insync_replicas=2,
        **{f"topic_{t}": f"{name}.{t}" for t in TOPIC_FIELDS},
    )


TOPIC_FIELDS = (
    "clickstream",
    "transactions",
    "customers",
    "dead_letter",
    "training",
    "reco_events",
    "recommendations",
    "segments",
    "audit",
    "read_audit",
    "triggers",
    "offer_rewards",
    "erasures",
)


@pytest.fixture
def admin(settings: Settings) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        yield client
    finally:
        client.close()


def partitions(admin: KafkaAdminClient, names: list[str]) -> list[dict[str, Any]]:
    return [
        {"topic": topic["name"], **p}
        for topic in admin.describe_topics(names)
        for p in topic["partitions"]
    ]


def page_view(n: int) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n}",
        "type": "page_viewed",
        "timestamp": T0 + n * 1000,
        "channel": "web",
        "anonymous_id": f"A{n % 37}",
        "properties": {"url": f"/{n}"},
    }


def send_acknowledged(producer: Producer, numbers: range) -> None:
    """Send through the producer's validation and routing, on its acks=all client, and
    wait for every acknowledgement: one missing fails the test."""
    futures = []
    for n in numbers:
        raw, topic, key = producer.check(page_view(n))
        futures.append(producer.kafka.send(topic, value=raw, key=key.encode("utf-8")))
    for future in futures:
        future.get(timeout=90)


def read_until(consumer: KafkaConsumer, seen: set[str], expected: set[str]) -> None:
    import json

    def more() -> bool:
        for records in consumer.poll(timeout_ms=500).values():
            seen.update(json.loads(r.value)["event_id"] for r in records)
        return expected <= seen

    wait_until(more, 90, f"{len(expected - seen)} acknowledged records to be consumed")


def test_topics_are_replicated_with_min_isr(settings: Settings, admin: KafkaAdminClient) -> None:
    created = ensure_topics(settings)
    specs = {s.name: s for s in topic_specs(settings)}
    assert sorted(created) == sorted(specs)

    def described() -> list[dict[str, Any]]:
        found = partitions(admin, list(specs))
        if len(found) == sum(s.partitions for s in specs.values()):
            return found
        return []  # the brokers learn of new topics a moment after the controller

    wait_until(lambda: bool(described()), 30, "every new partition in the metadata")
    for partition in described():
        assert len(partition["replica_nodes"]) == 3, partition
        assert sorted(partition["isr_nodes"]) == [1, 2, 3], partition

    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in specs]
    configs = admin.describe_configs(resources)["topic"]
    for name, spec in specs.items():
        actual = {key: entry["value"] for key, entry in configs[name].items()}
        assert actual == spec.configs, name
        assert actual["min.insync.replicas"] == "2"
    topics = Topics.from_settings(settings)
    for name in (*topics.compacted, topics.erasures):
        assert configs[name]["cleanup.policy"]["value"] == "compact"


def test_more_replicas_than_brokers_is_refused_by_name(cluster: KafkaCluster) -> None:
    settings = Settings(
        kafka_bootstrap=cluster.bootstrap,
        topic_replication=4,
        topic_min_insync_replicas=2,
        topic_clickstream=f"k3{uuid.uuid4().hex[:8]}.clickstream",
    )
    with pytest.raises(ConfigurationError, match=r"CDPULSE_TOPIC_REPLICATION=4.* 3 live broker"):
        ensure_topics(settings)


def test_a_killed_broker_loses_no_acknowledged_record(
    cluster: KafkaCluster, settings: Settings, admin: KafkaAdminClient
) -> None:
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    consumer = KafkaConsumer(
        topics.clickstream,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=f"{settings.app_id}-reader",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
    )
    producer = Producer.from_settings(settings, create_topics=False)
    seen: set[str] = set()
    try:
        send_acknowledged(producer, range(RECORDS))
        read_until(consumer, seen, {f"ev-{n}" for n in range(RECORDS)})

        # The leader of the first partition dies without a word.
        victim = next(
            p["leader_id"]
            for p in partitions(admin, [topics.clickstream])
            if p["partition_index"] == 0
        )
        cluster.kill(victim)

        # acks=all with min.insync.replicas 2: the two survivors acknowledge every write.
        send_acknowledged(producer, range(RECORDS, 2 * RECORDS))
        read_until(consumer, seen, {f"ev-{n}" for n in range(2 * RECORDS)})

        def victim_out() -> bool:
            return all(
                p["leader_id"] != victim and victim not in p["isr_nodes"]
                for p in partitions(admin, [topics.clickstream])
            )

        wait_until(victim_out, 60, f"broker {victim} to leave every leadership and ISR")

        cluster.start()  # only the killed node is down: it alone is started

        def all_in_sync() -> bool:
            return all(
                sorted(p["isr_nodes"]) == [1, 2, 3] for p in partitions(admin, [topics.clickstream])
            )

        wait_until(all_in_sync, 90, f"broker {victim} to rejoin every ISR")
        send_acknowledged(producer, range(2 * RECORDS, 3 * RECORDS))
        read_until(consumer, seen, {f"ev-{n}" for n in range(3 * RECORDS)})
    finally:
        producer.close()
        consumer.close()
