"""Faults of the distributed stack while events flow, each ending with the whole store
compared to the oracle: workers killed and workers joining and leaving (the chaos tests,
collected again on the cluster), a Redis master killed and its replica promoted, and
slots migrated between masters.

A master's writes reach its replica asynchronously; the worker waits for the replica
(``WAIT``) before it acknowledges a batch (``store/state.py``), so a master killed
loses no write whose offsets were committed, and the profiles stay exact.
"""

from __future__ import annotations

from tests.chaos.conftest import scaled
from tests.chaos.observe import alive, dead_letters, expected_dead_letters, metric
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.chaos.test_rebalance import test_workers_joining_and_leaving_mid_stream
from tests.chaos.test_worker_kills import test_workers_killed_mid_stream_leave_exact_profiles
from tests.cluster.nodes import RedisClusterNodes
from tests.integration.conftest import Env, Worker, drained, wait_until

__all__ = [
    "test_workers_joining_and_leaving_mid_stream",
    "test_workers_killed_mid_stream_leave_exact_profiles",
]


def busy(worker: Worker, more_than: float) -> None:
    wait_until(
        lambda: metric(worker, "cdpulse_events_applied_total") > more_than,
        300,
        "the worker to be busy applying events",
    )


def test_a_master_killed_mid_stream_is_replaced_by_its_replica_and_nothing_is_lost(
    env: Env, redis_cluster: RedisClusterNodes
) -> None:
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=21)
    sender = Sender(env.settings, messages, rate=scaled(800, 1500))
    worker = env.worker()
    assert worker.process is not None
    pid = worker.process.pid
    sender.start()
    busy(worker, 500)

    slots = redis_cluster.slots()
    victim = slots[0].primary
    errors = metric(worker, "cdpulse_redis_errors_total")
    redis_cluster.kill(victim)
    try:
        wait_until(
            lambda: redis_cluster.role(slots[0].replica) == "master",
            60,
            f"the replica on {slots[0].replica} to take over from {victim}",
        )
        redis_cluster.wait_serving()
        wait_until(
            lambda: metric(worker, "cdpulse_redis_errors_total") > errors,
            60,
            "the worker to run into the failover",
        )
        applied = metric(worker, "cdpulse_events_applied_total")
        busy(worker, applied + 200)  # on the promoted replica
    finally:
        redis_cluster.start()  # the old master rejoins, as its replica's replica

    sent = sender.finish()
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    assert alive(worker) and worker.process.pid == pid, "the worker process did not survive"
    assert redis_cluster.role(victim) == "slave"
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))


def test_slots_migrated_mid_stream_leave_exact_profiles(
    env: Env, redis_cluster: RedisClusterNodes
) -> None:
    # A quarter of the first master's slots hold 1/12 of the shards (store/keys.py
    # spreads them evenly): their keys move key by key while the worker writes them.
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=22)
    sender = Sender(env.settings, messages, rate=scaled(800, 1500))
    worker = env.worker()
    sender.start()
    busy(worker, 500)

    source, target = redis_cluster.slots()[0].primary, redis_cluster.slots()[-1].primary
    moved = redis_cluster.reshard(source, target, 1365)
    assert moved.returncode == 0, moved.stdout[-2000:]
    applied = metric(worker, "cdpulse_events_applied_total")
    busy(worker, applied + 200)  # after the move, on the slots' new master

    sent = sender.finish()
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    assert alive(worker)
    assert redis_cluster.slots()[0].primary == target, "the slots did not move"
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
