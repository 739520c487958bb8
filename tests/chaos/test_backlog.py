"""A worker that starts on a backlog: the plainest fault, and what every restart leaves.

Every message is in Kafka before the worker starts, as after an outage or for a new
deployment. No fault is injected, so any difference from the oracle is the engine's:
this test found that partitions read at different speeds put a customer's events more
sessions out of order than the profile's kept session spans allowed.
"""

from __future__ import annotations

from tests.chaos.conftest import scaled
from tests.chaos.state import assert_exact
from tests.chaos.stream import Sender, shop_stream, truth_of
from tests.integration.conftest import Env, wait_drained


def test_a_worker_catching_up_a_backlog_gives_exact_profiles(env: Env) -> None:
    messages = shop_stream(customers=scaled(150, 650), days=30, seed=3)
    sent = Sender(env.settings, messages)
    sent.start()
    sent.finish()

    env.worker()
    wait_drained(env, 600, "the worker to drain its backlog")
    assert_exact(env.redis, env.name, truth_of(messages))
