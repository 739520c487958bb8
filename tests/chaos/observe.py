"""Looking at a running system from outside: committed offsets, dead letters, memory."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from cdpulse.settings import Settings
from tests.chaos.stream import Outgoing
from tests.integration.conftest import Worker, consume_all


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The worker group's committed offset per (topic, partition)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def dead_letters(settings: Settings, at_least: int) -> dict[tuple[str, int, int], str]:
    """Each dead-lettered source message, (topic, partition, offset) -> reason, once.

    A batch processed again after a crash publishes its dead letters again; what counts
    is that every broken message has one, with the right reason, and nothing else has.
    """
    letters: dict[tuple[str, int, int], str] = {}
    for record in consume_all(settings, settings.topic_dead_letter, at_least):
        letter = json.loads(record.value)
        letters[(letter["topic"], letter["partition"], letter["offset"])] = letter["reason"]
    return letters


def expected_dead_letters(
    messages: list[Outgoing], settings: Settings
) -> dict[tuple[str, int, int], str]:
    """The dead letters ``messages`` must produce: one per broken message."""
    from cdpulse.contract.topics import Topics

    topics = Topics.from_settings(settings)
    return {
        (m.topic(topics), m.partition, m.offset): m.reason for m in messages if m.reason is not None
    }


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def health(worker: Worker) -> int:
    """The status of ``GET /healthz`` (0 when the worker does not answer)."""
    try:
        return httpx.get(f"{worker.url}/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def fetching(worker: Worker) -> bool:
    """Whether ``/readyz`` says the worker's fetch loop comes round (``fetching``)."""
    ready = httpx.get(f"{worker.url}/readyz", timeout=10).json()
    assert ready["fetching"] is True, ready
    return True


def alive(worker: Worker) -> bool:
    assert worker.process is not None
    return worker.process.poll() is None


def metric(worker: Worker, name: str, labels: dict[str, str] | None = None) -> float:
    """A metric of a live worker; -1 when it does not answer (busy or stopped)."""
    try:
        return worker.metric(name, labels)
    except httpx.HTTPError:
        return -1.0
