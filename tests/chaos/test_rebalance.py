"""Workers join and leave the group while events flow: two, then one, then two again.

Every rebalance moves partitions between processes that both write the same Redis. The
profiles must come out exact: nothing applied twice, nothing lost, and each customer's
messages applied in offset order (the profile's offsets map refuses anything older).
"""

from __future__ import annotations

from tests.chaos.conftest import scaled
from tests.chaos.observe import alive, dead_letters, expected_dead_letters, metric
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.integration.conftest import Env, Worker, drained, wait_until


def busy(worker: Worker) -> None:
    """Wait until ``worker`` was given partitions and applies events."""
    wait_until(
        lambda: metric(worker, "cdpulse_events_applied_total") > 0,
        120,
        f"the worker on port {worker.port} to apply events",
    )


def owns_partitions(worker: Worker) -> None:
    """Wait until ``worker`` joined the group and was given input partitions."""
    wait_until(
        lambda: metric(worker, "cdpulse_assigned_partitions") > 0,
        120,
        f"the worker on port {worker.port} to be given partitions",
    )


def test_workers_joining_and_leaving_mid_stream(env: Env) -> None:
    messages = shop_stream(customers=scaled(300, 1300), days=30, seed=17, repeated=0.002)
    cycles = scaled(1, 3)
    # Phases by share of the stream sent. The sender holds the last, longest one back
    # until the last returning worker took its partitions, so that events still flow
    # to it however long it took to start (a busy machine took longer than the phase).
    phases = 2 * cycles + 2
    sender = Sender(
        env.settings,
        messages,
        rate=scaled(600, 1500),
        hold_at=len(messages) * (phases - 1) // phases,
    )
    started = 0

    def start_worker() -> Worker:
        nonlocal started
        started += 1
        return env.worker(CDPULSE_DATA_DIR=str(env.logs / f"data-{started}"))

    staying, leaving = start_worker(), start_worker()
    sender.start()
    for cycle in range(cycles):
        busy(staying)
        busy(leaving)
        wait_until(
            lambda c=cycle: sender.share_sent > (2 * c + 1) / phases,
            300,
            "more of the stream to be sent",
        )
        leaving.stop()  # SIGTERM: leaves the group; the other worker takes its partitions
        wait_until(
            lambda c=cycle: sender.share_sent > (2 * c + 2) / phases,
            300,
            "more of the stream to be sent",
        )
        leaving = start_worker()

    wait_until(lambda: sender.held, 300, "the sender to hold the last phase back")
    owns_partitions(leaving)
    sender.release()
    busy(leaving)
    sent = sender.finish()
    wait_until(lambda: drained(env.settings), 600, "the workers to drain their topics")
    assert alive(staying) and alive(leaving)
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
