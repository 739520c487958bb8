"""The whole distributed stack at once: three Kafka brokers (tests/scale's cluster, every
topic with three replicas and ``min.insync.replicas`` 2) and a Redis Cluster (three
masters, three replicas: tests/cluster's), and ``env``, each test's slice of both.

The exactness tests of tests/chaos and tests/cluster are collected again here with this
``env``, so workers killed, workers joining and leaving, a Redis master killed and slots
migrated are each checked against the oracle on replicated Kafka and a sharded store;
``test_faults`` adds a broker killed mid-stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import moved
from tests.cluster.conftest import redis_cluster
from tests.cluster.nodes import RedisClusterNodes
from tests.integration import conftest as integration
from tests.integration.conftest import Env, make_env
from tests.scale.cluster import KafkaCluster
from tests.scale.conftest import cluster

# The integration suite's session stack (its single broker and Redis are not used by these
# tests), tests/scale's three brokers (``cluster``) and tests/cluster's Redis Cluster.
stack = integration.stack
__all__ = ["cluster", "redis_cluster", "stack"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "distributed" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def env(
    stack: None, cluster: KafkaCluster, redis_cluster: RedisClusterNodes, tmp_path: Path
) -> Iterator[Env]:
    url = redis_cluster.url
    assert url.startswith("redis+cluster://"), url
    slice_of_stack = make_env(tmp_path, url)
    one = next(slice_of_stack)
    try:
        yield moved(
            one,
            CDPULSE_KAFKA_BOOTSTRAP=cluster.bootstrap,
            CDPULSE_TOPIC_REPLICATION="3",
            CDPULSE_TOPIC_MIN_INSYNC_REPLICAS="2",
        )
    finally:
        slice_of_stack.close()  # stops the test's workers
