"""The whole distributed stack at once: three Kafka brokers (tests/scale's cluster, every
topic with three replicas and ``min.insync.replicas`` 2) and a Redis Cluster (three
masters, three replicas: tests/cluster's), and ``env``, each test's slice of both.

The exactness tests of tests/chaos and tests/cluster are collected again here with this
``env``, so workers killed, workers joining and leaving, a Redis master killed and slots
migrated are each checked against the oracle on replicated Kafka and a sharded store;
``test_faults`` adds a broker killed mid-stream."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import moved
from tests.cluster.nodes import RedisClusterNodes
from tests.integration import conftest as integration
from tests.integration.conftest import Env, make_env
from tests.scale.cluster import KafkaCluster

# The integration suite's session stack: pytest's session needs it started (its single
# broker and Redis are not used by these tests).
stack = integration.stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "distributed" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    kafka = KafkaCluster()
    kafka.start()
    kafka.wait_for_brokers()
    try:
        yield kafka
    finally:
        if not os.environ.get("CDPULSE_TEST_KEEP_STACK"):
            kafka.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes()
    nodes.start()
    nodes.wait_replicated()
    try:
        yield nodes
    finally:
        if not os.environ.get("CDPULSE_TEST_KEEP_STACK"):
            nodes.stop()


@pytest.fixture
def env(
    stack: None, kafka_cluster: KafkaCluster, redis_cluster: RedisClusterNodes, tmp_path: Path
) -> Iterator[Env]:
    url = redis_cluster.url
    assert url.startswith("redis+cluster://"), url
    slice_of_stack = make_env(tmp_path, url)
    one = next(slice_of_stack)
    try:
        yield moved(
            one,
            CDPULSE_KAFKA_BOOTSTRAP=kafka_cluster.bootstrap,
            CDPULSE_TOPIC_REPLICATION="3",
            CDPULSE_TOPIC_MIN_INSYNC_REPLICAS="2",
        )
    finally:
        slice_of_stack.close()  # stops the test's workers
