"""SIGKILL the worker at random moments while events stream in, and start another each time.

A killed worker dies between writing Redis and committing offsets, so its successor is
handed messages that were applied already; the profiles must still come out exact.
"""

from __future__ import annotations

import random
import time

from tests.chaos.conftest import FAST_FAILOVER, scaled
from tests.chaos.observe import alive, dead_letters, expected_dead_letters, metric
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.integration.conftest import Env, wait_drained, wait_until


def test_workers_killed_mid_stream_leave_exact_profiles(env: Env) -> None:
    rng = random.Random(7)
    # ~22k messages and 3 kills by default; ~106k and 6 kills in the full run.
    messages = shop_stream(customers=scaled(330, 1700), days=30, seed=7, repeated=0.002)
    kills = scaled(3, 6)
    sender = Sender(env.settings, messages, rate=scaled(1500, 2500))

    worker = env.worker(**FAST_FAILOVER)
    sender.start()
    for _ in range(kills):
        # Only a worker that is applying events is worth killing: one still waiting for
        # its partitions would die having done nothing.
        wait_until(
            lambda w=worker: metric(w, "cdpulse_events_applied_total") > 0,
            120,
            "the new worker to apply events",
        )
        time.sleep(rng.uniform(0.2, 3.0))
        worker.kill()
        worker = env.worker(**FAST_FAILOVER)

    sent = sender.finish()
    wait_drained(env, 600, "the last worker to drain its topics")
    assert alive(worker)
    wanted = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted)) == wanted
    assert_exact(env.redis, env.name, truth_of(sent))
