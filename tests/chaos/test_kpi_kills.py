"""SIGKILL the worker again and again while the shop streams in: the KPI counters must
still equal the oracle's, field by field.

The large twin of ``tests/integration/test_kpis.py`` (which ``make test`` runs: one kill
and a replay on a small shop): ``make chaos`` runs it, ~70k messages and six kills with
broken and repeated messages mixed in (``make test`` leaves it out; run alone, it takes
its small size). Identity and consent are sent first, for the reason that test gives.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

from tests import kpi_oracle
from tests.chaos.conftest import FAST_FAILOVER, scaled
from tests.chaos.observe import alive, metric
from tests.chaos.stream import Outgoing, Sender, shop_stream
from tests.integration.conftest import Env, drained, wait_drained, wait_until
from tests.integration.test_kpis import _check
from tests.unit.test_kpis import FIRST


def _first(message: Outgoing) -> bool:
    if message.reason is not None:
        return False
    return json.loads(message.value)["type"] in FIRST


def test_kpis_stay_exact_across_worker_kills(env: Env) -> None:
    rng = random.Random(17)
    messages = shop_stream(customers=scaled(250, 1200), days=30, seed=17, repeated=0.002)
    first = [m for m in messages if _first(m)]
    rest = [m for m in messages if not _first(m)]
    kills = scaled(2, 6)

    worker = env.worker(**FAST_FAILOVER)
    ahead = Sender(env.settings, first)
    ahead.start()
    sent = ahead.finish()
    wait_drained(env, 300, "identity and consent to be applied")
    sender = Sender(env.settings, rest, rate=scaled(1500, 2500))
    sender.start()
    for _ in range(kills):
        # The new worker is killed once it has taken over: it applied events, or it found
        # the ones it was handed applied already (a redelivery), or the stream has ended
        # and nothing is left for it. At full size a worker now outruns the sender, so the
        # last ones may only ever see redeliveries: waiting for "applied" alone timed out.
        wait_until(
            lambda w=worker: (
                metric(w, "cdpulse_events_applied_total") > 0
                or metric(w, "cdpulse_duplicates_total") > 0
                or (not sender.is_alive() and drained(env.settings))
            ),
            120,
            "the new worker to take over",
        )
        time.sleep(rng.uniform(0.2, 3.0))
        worker.kill()
        worker = env.worker(**FAST_FAILOVER)
    sent += sender.finish()
    wait_drained(env, 900, "the last worker to drain its topics")
    assert alive(worker)
    wanted = kpi_oracle.expected([m.value for m in sent], now=datetime.now(UTC))
    _check(env, wanted, f"after {kills} kills")
