"""The trigger gate on the real Kafka, Redis, a worker and an api: a simulated shop whose
producer breaks (titles sent null, prices in cents, the clickstream stalling, each fixed
later) is fed through the worker, with a churn model whose score climbs with a
customer's week of activity. The flags the worker shares in Redis must be the ones the
pure monitor judges from the same events, each inside its problem's window; no churn
trigger may fire on a score from a flagged hour; the held-back ones are counted by rule
and reason and shown in the customer's trigger view; and a customer gated while the
producer was broken fires once it is fixed (README: Triggers, Gating)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from cdpulse.connections import async_redis
from cdpulse.contract.mirror import decode
from cdpulse.contract.trigger import TriggerMessage
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.model import ChurnModel, Snapshot
from cdpulse.models.quality import ModelQuality
from cdpulse.monitors.health import HOUR, GateSpec, InputHealth
from cdpulse.privacy.seal import Seal
from cdpulse.producer import Producer
from cdpulse.store.keys import Keys
from cdpulse.store.models import churn_store
from tests.integration.conftest import Env, consume_all, decided, drained, wait_until
from tests.unit.test_trigger_gate import NULLS, SPEC, STALL, START_HOUR, UNIT, shop

RULES: dict[str, Any] = {
    "gates": {"churn": SPEC.model_dump()},
    "rules": [
        {
            "name": "churn_risk",
            "kind": "churn_risk",
            "threshold": 0.5,
            "marketing": False,
            "cooldown_hours": 0,
            "holdout": 0.0,
        }
    ],
}


def busy_means_risky() -> ChurnModel:
    """A churn model whose risk passes 0.5 at about seven events in a week: many
    customers cross it, at times spread over the shop's days."""
    model = ChurnModel.create()
    rng = random.Random(1)
    for _ in range(3000):
        events = rng.randrange(20)
        x = dict.fromkeys(FEATURE_NAMES, 0.0) | {"events_7d": float(events)}
        model.learn_one(x, int(events >= 6))
    return model


def publish(env: Env, model: ChurnModel) -> None:
    async def run() -> None:
        client = async_redis(env.settings.redis_url)
        try:
            store = churn_store(client, env.settings.redis_prefix, Seal.from_settings(env.settings))
            assert await store.publish(Snapshot(1, model, ModelQuality(), 0))
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_broken_producer_gates_the_churn_trigger(env: Env, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    variables = {"CDPULSE_TRIGGER_RULES": str(rules), "CDPULSE_MODEL_REFRESH_SECONDS": "1"}
    publish(env, busy_means_risky())
    worker = env.worker(**variables)
    api = env.api(**variables)
    wait_until(
        lambda: worker.metric("cdpulse_model_version", {"model": "churn"}) == 1,
        60,
        "the worker to load the churn model",
    )
    events = shop()
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to apply the shop")
    wait_until(lambda: decided(env.settings), 120, "the worker to decide what became due")

    # The flags in Redis: the pure monitor's verdicts on the same events, for every hour
    # all partitions are judged through.
    keys = Keys(env.settings.redis_prefix)
    client = env.redis
    try:
        stored = client.hgetall(keys.input_gate("churn"))
        marks = client.hgetall(keys.input_gate_judged)
    finally:
        client.close()
    flags = {int(h): r.decode() for h, r in stored.items()}
    assert len(marks) == env.settings.topic_partitions
    settled = min(int(m) for m in marks.values())
    health = InputHealth({"churn": GateSpec.model_validate(SPEC.model_dump())})
    for event in events:
        d = decode(json.dumps(event).encode())
        health.observe(d.type, d.at, d.properties)
    assert flags == health.judge(settled).get("churn", {})
    windows = {"nulls": NULLS, "unit": UNIT, "stalled": STALL}
    assert {r.split(":")[0] for r in flags.values()} == set(windows)
    for hour, reason in flags.items():
        low, high = windows[reason.split(":")[0]]
        assert low <= hour - START_HOUR < high, (hour, reason)
    # ... and on the worker's /metrics, for the alert (deploy/prometheus/rules.yml)
    for reason, n in Counter(flags.values()).items():
        labels = {"model": "churn", "reason": reason}
        assert worker.metric("cdpulse_input_gate_flags_total", labels) == n, reason

    # No churn trigger fired on a score from a flagged hour (or the one before: the
    # lookback); what the gate held back is counted by rule and reason.
    fired = worker.metric("cdpulse_triggers_total", {"rule": "churn_risk", "outcome": "fired"})
    gated = worker.metric("cdpulse_triggers_total", {"rule": "churn_risk", "outcome": "gated"})
    assert fired > 20 and gated > 0
    records = consume_all(env.settings, env.settings.topic_triggers, int(fired))
    messages = [TriggerMessage.model_validate_json(r.value) for r in records]
    assert len(messages) == fired
    assert len({m.trigger_id for m in messages}) == len(messages), "a situation fired twice"
    lookback = SPEC.lookback_hours
    for message in messages:
        hour = int(message.at.timestamp() * 1000) // HOUR
        assert hour <= settled
        assert not {hour - k for k in range(lookback + 1)} & set(flags), message
    by_reason = {
        reason: worker.metric(
            "cdpulse_triggers_gated_total", {"rule": "churn_risk", "reason": f"churn:{reason}"}
        )
        for reason in set(flags.values())
    }
    assert sum(by_reason.values()) == gated
    assert by_reason["nulls:page_viewed.title"] > 0 and by_reason["unit:product_viewed.price"] > 0

    # The customer's trigger view shows what was held back and why; the gate opens again
    # once the producer is fixed: a customer gated then fires later.
    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    fired_at: dict[str, list[int]] = {}
    for message in messages:
        fired_at.setdefault(message.customer_id, []).append(int(message.at.timestamp() * 1000))
    shown = 0
    resumed = 0
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for customer in customers:
            view = http.get(f"/v1/profiles/{customer}/triggers").json()
            for entry in view.get("gated", []):
                shown += 1
                assert entry["rule"] == "churn_risk"
                assert entry["reason"].removeprefix("churn:") in flags.values()
                held = int(datetime.fromisoformat(entry["at"]).timestamp() * 1000)
                assert {held // HOUR - k for k in range(lookback + 1)} & set(flags)
                if any(t > held for t in fired_at.get(customer, [])):
                    resumed += 1
    assert 0 < shown <= gated  # a watch keeps its newest few
    assert resumed > 0
