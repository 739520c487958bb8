"""The broker coordinating the worker group killed with SIGKILL mid-stream, on three
brokers and a Redis Cluster: the worker must find another coordinator to commit to (a
chaos run on one broker once saw aiokafka never look one up again), and the profiles stay
exact. The small variant runs in ``make test``; ``make distributed`` runs it with the
other faults (``test_faults``)."""

from __future__ import annotations

import httpx
from kafka import KafkaAdminClient

from cdpulse.settings import Settings
from tests.chaos.conftest import scaled
from tests.chaos.observe import alive, dead_letters, expected_dead_letters, metric
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.cluster.test_faults import busy
from tests.integration.conftest import Env, wait_drained
from tests.scale.cluster import KafkaCluster


def java_hash(text: str) -> int:
    """Java's ``String.hashCode``, which Kafka reads a group id's coordinator from."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def group_coordinator(settings: Settings) -> int:
    """The broker coordinating the worker group: the leader of the ``__consumer_offsets``
    partition Kafka assigns the group id to (``abs(hashCode) % partitions``)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        (offsets,) = admin.describe_topics(["__consumer_offsets"])
        partitions = offsets["partitions"]
        wanted = (java_hash(settings.app_id) & 0x7FFFFFFF) % len(partitions)
        return int(next(p["leader_id"] for p in partitions if p["partition_index"] == wanted))
    finally:
        admin.close()


def test_the_group_coordinators_broker_killed_mid_stream_leaves_exact_profiles(
    env: Env, cluster: KafkaCluster
) -> None:
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=23)
    sender = Sender(env.settings, messages, rate=scaled(600, 1500))
    worker = env.worker()
    assert worker.process is not None
    pid = worker.process.pid
    sender.start()
    busy(worker, 500)

    victim = group_coordinator(env.settings)
    cluster.kill(victim)
    try:
        applied = metric(worker, "cdpulse_events_applied_total")
        busy(worker, applied + 200)  # on the two brokers left
    finally:
        cluster.start()  # only the killed one is down: it alone starts

    sent = sender.finish()
    wait_drained(env, 600, "the worker to commit to the end")
    assert alive(worker) and worker.process.pid == pid, "the worker process did not survive"
    ready = httpx.get(f"{worker.url}/readyz", timeout=10).json()
    assert ready["offsets_committed"] is True, ready
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
