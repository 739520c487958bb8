"""Fault tests: real Kafka, Redis and ``cdpulse worker`` processes, faults injected mid-stream.

Every test ends by comparing the whole store with the oracle (``tests/oracle.py``).
Sizes are small by default, for ``make test``; ``CDPULSE_CHAOS_FULL=1`` (``make chaos``)
scales them up. Tests that kill or restart Kafka or Redis run one of their own
(``kafka_env``, ``redis_env``); the others share the session's stack, each with its own
topics, key prefix and consumer group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdpulse.settings import Settings
from tests.chaos.services import PrivateKafka, PrivateRedis
from tests.integration import conftest as integration
from tests.integration.conftest import Env

# The integration suite's fixtures: the session stack and a test's slice of it.
stack = integration.stack
env = integration.env

FULL = os.environ.get("CDPULSE_CHAOS_FULL", "") not in ("", "0")

FAST_FAILOVER = integration.FAST_FAILOVER


def scaled(small: int, full: int) -> int:
    """``small`` for ``make test``, ``full`` for ``make chaos``."""
    return full if FULL else small


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chaos" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def moved(env: Env, **variables: str) -> Env:
    """``env`` with some settings changed (another Kafka or Redis, say).

    Its workers are ``env``'s too, so that ``env`` stops any a test leaves running.
    """
    merged = {**env.variables, **variables}
    settings = Settings(**{k.removeprefix("CDPULSE_").lower(): v for k, v in merged.items()})
    return Env(env.name, settings, merged, env.logs, env.workers)


@pytest.fixture
def redis_env(env: Env, tmp_path: Path) -> Iterator[tuple[Env, PrivateRedis]]:
    """An env whose Redis is the test's own, to kill and restart; Kafka is shared."""
    redis = PrivateRedis(tmp_path / "private-redis")
    redis.start()
    private = moved(env, CDPULSE_REDIS_URL=redis.url)
    try:
        yield private, redis
    finally:
        for worker in private.workers:
            worker.stop()
        redis.stop()


@pytest.fixture
def kafka_env(env: Env, tmp_path: Path) -> Iterator[tuple[Env, PrivateKafka]]:
    """An env whose Kafka is the test's own, to restart; Redis is shared."""
    kafka = PrivateKafka(tmp_path / "private-kafka")
    kafka.start()
    private = moved(env, CDPULSE_KAFKA_BOOTSTRAP=kafka.bootstrap)
    try:
        yield private, kafka
    finally:
        for worker in private.workers:
            worker.stop()
        kafka.stop()
