"""The replicated cluster, once per session of tests/scale."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.scale.cluster import KafkaCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "scale" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Iterator[KafkaCluster]:
    kafka = KafkaCluster()
    kafka.start()
    kafka.wait_for_brokers()
    try:
        yield kafka
    finally:
        if not os.environ.get("CDPULSE_TEST_KEEP_STACK"):
            kafka.stop()
