"""The Redis Cluster, once per session of tests/cluster, beside the session's Kafka; and
``env``, each test's slice of the stack, pointed at the cluster (``redis+cluster://``).

The tests here run the exactness tests of tests/integration against the cluster: the
same test functions, collected again with this ``env``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import RedisClusterNodes
from tests.integration import conftest as integration
from tests.integration.conftest import Env, make_env

# The integration suite's session stack: its Kafka (and single Redis, unused here).
stack = integration.stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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
def env(stack: None, redis_cluster: RedisClusterNodes, tmp_path: Path) -> Iterator[Env]:
    url = redis_cluster.url
    assert url.startswith("redis+cluster://"), url
    yield from make_env(tmp_path, url)
