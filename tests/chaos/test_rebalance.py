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
from tests.integration.conftest import Env, Worker, wait_drained, wait_until


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
    # The stream in phases; the sender holds at each phase's end until the test made its
    # change (a worker leaving or joining), then the next phase flows while the group
    # rebalances. A busy machine took longer to start a worker than a phase lasted: the
    # stream then ran out before the worker joined, and it never applied an event.
    phases = 2 * cycles + 2
    sender = Sender(
        env.settings,
        messages,
        rate=scaled(600, 1500),
        holds=[len(messages) * k // phases for k in range(1, phases)],
    )
    started = 0

    def start_worker() -> Worker:
        nonlocal started
        started += 1
        return env.worker(CDPULSE_DATA_DIR=str(env.logs / f"data-{started}"))

    def phase_ends() -> None:
        wait_until(lambda: sender.held, 300, "the sender to end a phase")

    staying, leaving = start_worker(), start_worker()
    owns_partitions(staying)
    owns_partitions(leaving)
    sender.start()
    for _ in range(cycles):
        busy(staying)
        busy(leaving)
        phase_ends()
        sender.release()
        leaving.stop()  # SIGTERM: leaves the group; the other worker takes its partitions
        phase_ends()
        leaving = start_worker()
        owns_partitions(leaving)
        sender.release()

    busy(leaving)
    sent = sender.finish()
    wait_drained(env, 600, "the workers to drain their topics")
    assert alive(staying) and alive(leaving)
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
