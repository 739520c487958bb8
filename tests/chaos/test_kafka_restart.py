"""The Kafka broker restarts mid-stream: cleanly by default, also SIGKILLed in the full run.

The worker and the producers reconnect on their own; the worker stays the same process,
and the profiles come out exact. The broker is the test's own.
"""

from __future__ import annotations

from tests.chaos.conftest import FULL, scaled
from tests.chaos.observe import (
    alive,
    dead_letters,
    expected_dead_letters,
    fetching,
    health,
    metric,
)
from tests.chaos.services import PrivateKafka
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.integration.conftest import Env, wait_drained, wait_until


def test_kafka_restarted_mid_stream(kafka_env: tuple[Env, PrivateKafka]) -> None:
    env, kafka = kafka_env
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=13)
    sender = Sender(env.settings, messages, rate=scaled(800, 1500))
    worker = env.worker(CDPULSE_TEST_LOGLEVEL="info")  # its restart story, should it stall
    assert worker.process is not None
    pid = worker.process.pid
    sender.start()

    for kill in [False, True] if FULL else [False]:
        applied = metric(worker, "cdpulse_events_applied_total")
        wait_until(
            lambda a=applied: metric(worker, "cdpulse_events_applied_total") > a + 500,
            180,
            "the worker to be busy applying events",
        )
        if kill:
            kafka.kill()
        else:
            kafka.stop()
        wait_until(lambda: health(worker) == 503, 60, "/healthz to report Kafka down")
        kafka.start()
        wait_until(lambda: health(worker) == 200, 120, "the worker to find Kafka again")

    sent = sender.finish()
    wait_drained(env, 600, "the worker to drain its topics")
    assert alive(worker) and worker.process.pid == pid, "the worker process did not survive"
    assert fetching(worker)  # a restart leaves no false "not fetching" behind
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
