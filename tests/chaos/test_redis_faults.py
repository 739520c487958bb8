"""Redis dies mid-stream (SIGKILL) and comes back; later it restarts cleanly (SIGTERM).

The worker must back off and carry on in the same process, commit no offset whose
writes Redis has not acknowledged, and end with exact profiles. The Redis runs with the
stack's configuration: append-only file, fsync every second.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

from cdpulse.contract.topics import Topics
from tests.chaos.conftest import scaled
from tests.chaos.observe import (
    alive,
    committed_offsets,
    dead_letters,
    expected_dead_letters,
    health,
    metric,
)
from tests.chaos.services import PrivateRedis
from tests.chaos.state import StoredState, assert_exact, read_state
from tests.chaos.stream import Outgoing, Sender, shop_stream, truth_of
from tests.integration.conftest import Env, Worker, wait_drained, wait_until


@dataclass
class Outage:
    """One Redis outage: the offsets committed while it lasted, what Redis came back with."""

    how: str
    committed: dict[tuple[str, int], int]
    recovered: StoredState


def frozen_offsets(env: Env) -> dict[tuple[str, int], int]:
    """The group's committed offsets once they stop moving (Redis is down)."""
    seen: list[dict[tuple[str, int], int]] = [committed_offsets(env.settings)]

    def unchanged() -> bool:
        time.sleep(3)  # three commit intervals
        seen.append(committed_offsets(env.settings))
        return seen[-1] == seen[-2]

    wait_until(unchanged, 60, "the committed offsets to stop moving while Redis is down")
    return seen[-1]


def unapplied_below_commit(
    env: Env, sent: list[Outgoing], committed: dict[tuple[str, int], int], state: StoredState
) -> tuple[int, list[str]]:
    """Of the valid messages below a committed offset: how many, and those Redis lacks."""
    topics = Topics.from_settings(env.settings)
    applied: dict[str, int] = {}
    for profile in state.profiles.values():
        for source, offset in profile.offsets.items():
            applied[source] = max(offset, applied.get(source, -1))
    checked = 0
    lost: list[str] = []
    for m in sent:
        topic = m.topic(topics)
        if m.reason is not None or m.offset >= committed.get((topic, m.partition), 0):
            continue
        checked += 1
        key = m.key.decode() if m.key else ""
        if applied.get(f"{topic}:{m.partition}:{key}", -1) < m.offset:
            lost.append(f"{topic}:{m.partition}@{m.offset}")
    return checked, lost


def outage(env: Env, worker: Worker, redis: PrivateRedis, kill: bool) -> Outage:
    """Take Redis down mid-batch, wait until the worker notices, and bring it back."""
    assert worker.process is not None
    errors = metric(worker, "cdpulse_redis_errors_total")
    applied = metric(worker, "cdpulse_events_applied_total")
    wait_until(
        lambda: metric(worker, "cdpulse_events_applied_total") > applied + 500,
        300,
        "the worker to be busy applying events",
    )
    if kill:
        redis.kill()
    else:
        redis.stop()
    wait_until(
        lambda: metric(worker, "cdpulse_redis_errors_total") > errors,
        60,
        "the worker to run into the Redis outage",
    )
    wait_until(lambda: health(worker) == 503, 30, "/healthz to report Redis down")
    committed = frozen_offsets(env)
    # Stopped while Redis comes back, so that what Redis recovered from its append-only
    # file is read before the worker writes again.
    worker.process.send_signal(signal.SIGSTOP)
    try:
        redis.start()
        recovered = read_state(env.redis, env.name)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    wait_until(lambda: health(worker) == 200, 60, "the worker to find Redis again")
    return Outage("SIGKILL" if kill else "SIGTERM", committed, recovered)


def test_redis_killed_and_restarted_mid_stream(redis_env: tuple[Env, PrivateRedis]) -> None:
    env, redis = redis_env
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=11)
    sender = Sender(env.settings, messages, rate=scaled(800, 1500))
    worker = env.worker()
    assert worker.process is not None
    pid = worker.process.pid
    sender.start()

    outages = [outage(env, worker, redis, kill=True), outage(env, worker, redis, kill=False)]

    sent = sender.finish()
    wait_drained(env, 600, "the worker to drain its topics")
    assert alive(worker) and worker.process.pid == pid, "the worker process did not survive"
    assert health(worker) == 200
    assert metric(worker, "cdpulse_redis_errors_total") > 0

    for down in outages:
        checked, lost = unapplied_below_commit(env, sent, down.committed, down.recovered)
        assert checked > 0, f"nothing was committed before the {down.how} outage"
        assert not lost, (
            f"{len(lost)} of {checked} messages below the offsets committed before Redis got "
            f"{down.how} are missing from the Redis that came back (e.g. {lost[:5]})"
        )
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))


def test_sigterm_while_redis_is_down_stops_the_worker_and_loses_nothing(
    redis_env: tuple[Env, PrivateRedis],
) -> None:
    """A worker retrying a batch obeys SIGTERM; the batch stays unacked for the next one."""
    env, redis = redis_env
    messages = shop_stream(customers=scaled(100, 400), days=20, seed=12)
    sender = Sender(env.settings, messages, rate=scaled(800, 1500))
    worker = env.worker()
    assert worker.process is not None
    sender.start()
    wait_until(
        lambda: metric(worker, "cdpulse_events_applied_total") > 200,
        120,
        "the worker to be busy applying events",
    )
    errors = metric(worker, "cdpulse_redis_errors_total")
    redis.kill()
    wait_until(
        lambda: metric(worker, "cdpulse_redis_errors_total") > errors,
        60,
        "the worker to run into the Redis outage",
    )
    worker.process.send_signal(signal.SIGTERM)
    try:
        code = worker.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(
            "the worker ignored SIGTERM while Redis was down:\n" + worker.tail(60)
        ) from None
    assert code is not None

    redis.start()
    sent = sender.finish()
    successor = env.worker()
    wait_drained(env, 600, "a new worker to drain the topics")
    assert alive(successor)
    assert_exact(env.redis, env.name, truth_of(sent))
