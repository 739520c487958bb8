"""Faults of the distributed stack while events flow, each ending with the whole store
compared to the oracle: workers killed and workers joining and leaving (the chaos tests,
collected again on the cluster), a Redis master killed and its replica promoted, and
slots migrated between masters.

A master's writes reach its replica asynchronously; the worker waits for the replica
(``WAIT``) before it acknowledges a batch (``store/state.py``), so a master killed
loses no write whose offsets were committed, and the profiles stay exact.
"""

from __future__ import annotations

from redis.crc import key_slot

from cdpulse.store.keys import TAGS
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
    redis_cluster.kill_node(victim)
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
    # A quarter of the first master's slots, a twelfth of the shards (store/keys.py
    # spreads them evenly), moved to another master and back, key by key, while the
    # stream flows and the worker reads and writes them.
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=22)
    sender = Sender(env.settings, messages, rate=scaled(500, 1500))
    worker = env.worker()
    sender.start()
    busy(worker, 500)

    source = redis_cluster.slots()[0].primary
    target = next(r.primary for r in redis_cluster.slots() if r.primary != source)
    moving = redis_cluster.owned(source)[:1365]  # redis-cli moves a master's first slots
    shards = [key_slot(f"{{{tag}}}".encode()) for tag in TAGS]
    held = sum(redis_cluster.keys_in_slot(source, s) for s in shards if s in moving)
    assert held > 0, "the slots to move hold none of the test's keys"
    moves = 0
    while sender.is_alive() or moves % 2:  # an even number: the slots end where they were
        redis_cluster.reshard(source, target, len(moving))
        # every node learns the new owners from the cluster bus, a moment later
        wait_until(
            lambda t=target: set(moving) <= set(redis_cluster.owned(t)),
            30,
            f"the nodes to agree the slots moved to {target}",
        )
        source, target = target, source
        moves += 1

    sent = sender.finish()
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    assert moves >= 2 and alive(worker)
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
