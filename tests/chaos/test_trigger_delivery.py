"""The broker SIGKILLed while triggers fire: send, then claim, so no firing is lost.

A batch publishes its trigger firings and waits for the broker's acknowledgement before
its Redis write claims their ids (``pipeline/batch.py``). The worker runs with a short
``CDPULSE_PRODUCE_TIMEOUT_SECONDS`` and the broker stays down three times as long, so
publishes really fail (``cdpulse_kafka_errors_total`` rises) and their batches are retried.
Then every firing the worker claimed in Redis is on the triggers topic, and the firings
published are exactly those ``tests/trigger_oracle.py`` computes from the sent events.
A firing may be published more than once (at least once): repeats are counted, not refused.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis
import yaml

from cdpulse.settings import Settings
from cdpulse.store.keys import Keys
from tests import trigger_oracle
from tests.chaos.conftest import scaled
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
from tests.integration.conftest import (
    Env,
    consume_all,
    decided,
    drained,
    low_watermark,
    wait_until,
    why_not_drained,
)

PRODUCE_TIMEOUT = 3.0  # seconds; the broker stays down three times as long


def claimed_exposures(client: redis.Redis, prefix: str) -> set[str]:
    """The trigger ids whose exposure (fired or holdout) a worker's write claimed.

    Read from the customers' claims (``Keys.claimed``): each exposure claims its trigger
    id; a conversion claims it with ``:converted``.
    """
    ids = set()
    for key in client.scan_iter(match=Keys(prefix).ids_pattern("claimed"), count=1000):
        for claim in client.hkeys(key):
            trigger_id = claim.decode()
            if not trigger_id.endswith(":converted"):
                ids.add(trigger_id)
    return ids


def test_trigger_firings_are_sent_before_they_are_claimed_so_a_broker_kill_loses_none(
    kafka_env: tuple[Env, PrivateKafka], tmp_path: Path
) -> None:
    env, kafka = kafka_env
    # The oracle's rules: caps and cooldowns out of the way, so consent and the holdout
    # alone decide each situation's outcome.
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(trigger_oracle.RULES), encoding="utf-8")
    messages = shop_stream(customers=scaled(250, 1000), days=30, seed=29)
    # At info, the worker's log tells how it came through the restart (its rebalances,
    # seeks and flow), which a drain that times out shows (why_not_drained).
    worker = env.worker(
        CDPULSE_TRIGGER_RULES=str(rules),
        CDPULSE_PRODUCE_TIMEOUT_SECONDS=str(PRODUCE_TIMEOUT),
        CDPULSE_TEST_LOGLEVEL="info",
    )
    assert worker.process is not None
    pid = worker.process.pid
    # As fast as the producer goes: the broker dies while the worker works through a
    # backlog in full batches, which decide firings.
    sender = Sender(env.settings, messages)
    sender.start()

    failed = 0.0
    for _ in range(scaled(1, 2)):
        applied = metric(worker, "cdpulse_events_applied_total")
        wait_until(
            lambda a=applied: (
                metric(worker, "cdpulse_events_applied_total") > a + len(messages) // 5
            ),
            180,
            "the worker to be busy applying events",
        )
        errors = worker.metric("cdpulse_kafka_errors_total")
        kafka.kill()
        time.sleep(3 * PRODUCE_TIMEOUT)
        failed += worker.metric("cdpulse_kafka_errors_total") - errors
        assert health(worker) == 503, "/healthz does not report the broker down"
        kafka.start()
        wait_until(lambda: health(worker) == 200, 120, "the worker to find Kafka again")

    sent = sender.finish()

    def done(step: Callable[[Settings], bool]) -> bool:
        assert alive(worker), f"the worker died:\n{worker.tail()}"
        return step(env.settings)

    wait_until(
        lambda: done(drained), 600, "the worker to drain its topics", lambda: why_not_drained(env)
    )
    # What the last batch made due is decided by the next (idle) batch.
    wait_until(lambda: done(decided), 120, "the worker to decide what became due")

    claimed = claimed_exposures(env.redis, env.name)
    fired = {i for i in claimed if not trigger_oracle.in_holdout(i, trigger_oracle.HOLDOUT)}
    records = consume_all(env.settings, env.settings.topic_triggers, len(fired))
    published = Counter(json.loads(r.value)["trigger_id"] for r in records)
    lost = sorted(fired - set(published))
    assert not lost, (
        f"{len(lost)} of {len(fired)} firings were claimed in Redis but never published, "
        f"e.g. {lost[:5]}"
    )

    # The oracle, from the sent events alone: what the final low watermark decided.
    events = [json.loads(m.value) for m in sent if m.reason is None]
    consent = trigger_oracle.marketing_consent(events)
    lateness = int(env.settings.trigger_lateness_seconds * 1000)
    watermark = low_watermark(env.settings)
    outcomes = {
        s.trigger_id: trigger_oracle.outcome(s, consent, trigger_oracle.HOLDOUT)
        for s in trigger_oracle.situations(events)
        if s.at + lateness <= watermark
    }
    wanted = {i for i, outcome in outcomes.items() if outcome == "fired"}
    assert len(wanted) >= 50, "the shop must give the test firings to lose"
    assert set(published) == wanted
    assert claimed == {i for i, o in outcomes.items() if o in ("fired", "holdout")}
    repeats = sum(n - 1 for n in published.values())
    print(f"{len(wanted)} firings, {repeats} published again; {failed:.0f} publishes failed")

    # Checked after the firings, so that a publish error swallowed shows as what it lost.
    assert failed > 0, "the broker was down and no publish failed: the test proved nothing"
    assert alive(worker) and worker.process.pid == pid, "the worker process did not survive"
    assert fetching(worker)
    wanted_letters = expected_dead_letters(sent, env.settings)
    assert dead_letters(env.settings, len(wanted_letters)) == wanted_letters
    assert_exact(env.redis, env.name, truth_of(sent))
