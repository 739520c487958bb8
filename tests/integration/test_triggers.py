"""Triggers live on the stream: the simulated shop through a real worker, Kafka and Redis.

The expected firings come from ``tests.trigger_oracle``, computed from the same events;
the worker must publish each expected firing exactly once, none for customers without
marketing consent, and show the same counts in /metrics and the uplift endpoint. A
worker killed mid-stream and replaced must not change any of it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from cdpulse.contract.trigger import TriggerMessage
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from cdpulse.store.triggers import RedisTriggerStore
from tests import trigger_oracle
from tests.integration.conftest import Env, caught_up, consume_all, drained, wait_until
from tests.unit.test_trigger_store import contract

HOLDOUT = trigger_oracle.HOLDOUT
OFFERS = trigger_oracle.OFFERS
RULES = trigger_oracle.RULES
WINDOW = trigger_oracle.WINDOW
LATENESS = 60_000  # CDPULSE_TRIGGER_LATENESS_SECONDS by default


def low_watermark(env: Env) -> int:
    marks = env.redis.hvals(f"{env.settings.redis_prefix}:watermark")
    assert len(marks) == 3 * env.settings.topic_partitions, "every partition has reported"
    return min(int(m) for m in marks)


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "killed-mid-stream"])
def test_triggers_fire_once_per_situation_and_only_with_consent(
    env: Env, tmp_path: Path, kill: bool
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    events = list(Shop(customers=400, days=10, seed=23).events())
    worker = env.worker(CDPULSE_TRIGGER_RULES=str(rules))
    half = len(events) // 2
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            producer.send(event)
    if kill:
        # Killed while it works through the first half: what it decided but had not
        # committed is re-delivered to its successor, which must not fire it again.
        wait_until(lambda: worker.metric("cdpulse_triggers_total") > 0, 300, "the first decisions")
        worker.kill()
        worker = env.worker(CDPULSE_TRIGGER_RULES=str(rules))
    with Producer.from_settings(env.settings) as producer:
        for event in events[half:]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")

    watermark = low_watermark(env)
    consent = trigger_oracle.marketing_consent(events)
    outcomes = {
        s.trigger_id: (s, trigger_oracle.outcome(s, consent, HOLDOUT))
        for s in trigger_oracle.situations(events)
        if s.at + LATENESS <= watermark
    }
    expected = Counter((s.rule, outcome) for s, outcome in outcomes.values())
    fired = {i for i, (_, outcome) in outcomes.items() if outcome == "fired"}
    assert len(fired) >= 30, "the shop must give the test something to check"
    assert all(expected[(rule, "no_consent")] > 0 for rule in ("cart_abandoned", "cross_sell"))

    records = consume_all(env.settings, env.settings.topic_triggers, len(fired))
    messages = [TriggerMessage.model_validate_json(r.value) for r in records]
    sent = Counter(m.trigger_id for m in messages)
    assert [i for i, n in sent.items() if n > 1] == [], "a situation fired twice"
    assert set(sent) == fired
    assert [m.trigger_id for m in messages if not consent.get(m.customer_id, (0, False))[1]] == []
    assert {r.key.decode() for r in records} == {m.customer_id for m in messages}
    for message in messages:
        situation, _ = outcomes[message.trigger_id]
        assert message.rule == situation.rule and message.kind == situation.rule
        assert int(message.at.timestamp() * 1000) == situation.at
        assert tuple(message.products) == situation.products
        assert message.reasons and all(message.reasons)
        if message.rule == "cart_abandoned":
            assert message.offer is not None
            assert message.offer.offer_id in OFFERS
            assert 0 < message.offer.propensity <= 1
            assert message.offer.features["bias"] == 1.0
        else:
            assert message.offer is None

    # The uplift counters live in Redis and are claimed like firings: exact even across
    # the kill. /metrics is per process: exact for a worker that saw the whole stream.
    # Attribution windows closed by the watermark: converted when the customer ordered or
    # redeemed within them.
    bought = trigger_oracle.conversions(events)
    closed = {
        i: trigger_oracle.converted(s, bought, WINDOW)
        for i, (s, outcome) in outcomes.items()
        if outcome in ("fired", "holdout") and s.at + WINDOW + LATENESS <= watermark
    }
    assert closed and any(closed.values())
    with httpx.Client(base_url=worker.url, timeout=10) as http:
        for rule in ("cart_abandoned", "high_intent", "cross_sell"):
            report: dict[str, Any] = http.get(f"/v1/rules/{rule}/uplift").json()
            assert report["treated"]["exposed"] == expected[(rule, "fired")], report
            assert report["holdout"]["exposed"] == expected[(rule, "holdout")], report
            for group in ("fired", "holdout"):
                converted = sum(
                    c
                    for i, c in closed.items()
                    if outcomes[i][0].rule == rule and outcomes[i][1] == group
                )
                name = "treated" if group == "fired" else "holdout"
                assert report[name]["converted"] == converted, (rule, group, report)
            assert report["holdout_share"] == HOLDOUT
        # the newest firings: older ones may be forgotten once no cap or cooldown needs them
        for message in sorted(messages, key=lambda m: m.at)[-5:]:
            watch = http.get(f"/v1/profiles/{message.customer_id}/triggers").json()
            at = message.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert {"rule": message.rule, "at": at} in watch["recent"], watch
        assert http.get("/v1/profiles/nobody/triggers").status_code == 404
        missing = http.get("/v1/rules/nope/uplift")
        assert missing.status_code == 404 and "cart_abandoned" in missing.json()["error"]
        configured = http.get("/v1/rules").json()
        assert [r["name"] for r in configured["rules"]] == [r["name"] for r in RULES["rules"]]
    for (rule, outcome), n in expected.items():
        live = worker.metric("cdpulse_triggers_total", {"rule": rule, "outcome": outcome})
        assert live <= n if kill else live == n, (rule, outcome, live, n)
    if kill:
        return
    # The offers' outcomes reach the bandit's learner, which publishes a policy.
    rewards = [
        converted
        for i, converted in closed.items()
        if outcomes[i][0].rule == "cart_abandoned" and outcomes[i][1] == "fired"
    ]
    assert rewards, "some cart offers must have a closed window"
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_offer_rewards),
        120,
        "the offer learner to learn every reward",
    )
    for reward in (0, 1):
        live = worker.metric(
            "cdpulse_offer_rewards_total", {"rule": "cart_abandoned", "reward": str(reward)}
        )
        assert live == sum(r == reward for r in rewards), reward
    assert worker.metric("cdpulse_model_version", {"model": "offers"}) >= 1


def test_the_redis_trigger_store_keeps_the_contract(env: Env) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(env.settings.redis_url)
        try:
            await contract(RedisTriggerStore(client, env.settings.redis_prefix))
        finally:
            await client.aclose()

    asyncio.run(run())
