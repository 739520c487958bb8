"""Gating on the model's own health on the real Kafka, Redis, a worker and an api: a churn
snapshot the learner judged degraded (an input drifted against its reference) is published,
a simulated shop streamed through the worker. Its scores are flagged on the profile
documents, and the churn_risk rule does what its on_degraded says: ``hold`` fires nothing
while the model is degraded, counts and shows each held crossing, and fires the held
customers once a healthy snapshot scores them; ``fallback`` fires by its condition only
(README: Triggers, outcomes; Online models, Model health)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from cdpulse.connections import async_redis
from cdpulse.contract.trigger import TriggerMessage
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.drift import DAY, DriftWindows
from cdpulse.models.health import HealthPolicy
from cdpulse.privacy.seal import Seal
from cdpulse.producer import Producer
from cdpulse.simulate.shop import DEFAULT_START, Shop
from cdpulse.store.models import churn_store
from tests.integration.conftest import Env, Worker, consume_all, decided, drained, wait_until

THRESHOLD = 0.5
FALLBACK = "orders >= 1"


def rules(**churn: Any) -> dict[str, Any]:
    rule = {
        "name": "churn_risk",
        "kind": "churn_risk",
        "threshold": THRESHOLD,
        "marketing": False,
        "cooldown_hours": 0,
        "holdout": 0.0,
    }
    # The input gate judges nothing here (no inputs declared): only the model's health.
    nothing = {"fields": [], "amounts": [], "streams": []}
    return {"gates": {"churn": nothing}, "rules": [rule | churn]}


def learned(drifted: bool) -> Snapshot:
    """A snapshot the churn learner made: risk climbs with a week's events (many shop
    customers cross THRESHOLD), and with ``drifted`` the revenue of 60 days moves in the
    last week of its labels, which the learner judges degraded."""
    policy = HealthPolicy(min_examples=100, windows=DriftWindows(7, 14, None))
    learner = ChurnLearner.fresh(policy=policy)
    rng = random.Random(1)
    pairs = []
    for i in range(3000):
        day = i * 21 // 3000
        events = rng.randrange(20)
        x = dict.fromkeys(FEATURE_NAMES, 0.0) | {"events_7d": float(events)}
        spent = rng.uniform(6, 8) if drifted and day >= 14 else rng.uniform(0, 3)
        x["log_revenue_60d"] = spent
        features = [x[n] for n in FEATURE_NAMES]
        pairs.append((i, Example(f"c{i}", day * DAY, day * DAY + 1, int(events >= 6), features)))
    learner.learn(pairs)
    return learner.snapshot()


def publish(env: Env, snapshot: Snapshot) -> None:
    async def run() -> None:
        client = async_redis(env.settings.redis_url)
        try:
            store = churn_store(client, env.settings.redis_prefix, Seal.from_settings(env.settings))
            assert await store.publish(snapshot)
        finally:
            await client.aclose()

    asyncio.run(run())


def start(env: Env, tmp_path: Path, snapshot: Snapshot, **churn: Any) -> tuple[Worker, Worker]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules(**churn)), encoding="utf-8")
    variables = {"CDPULSE_TRIGGER_RULES": str(path), "CDPULSE_MODEL_REFRESH_SECONDS": "1"}
    publish(env, snapshot)
    worker, api = env.worker(**variables), env.api(**variables)
    loaded(worker, snapshot.version)
    return worker, api


def loaded(worker: Worker, version: int) -> None:
    wait_until(
        lambda: worker.metric("cdpulse_model_version", {"model": "churn"}) == version,
        60,
        f"the worker to load churn snapshot {version}",
    )


def stream(env: Env, events: Iterable[dict[str, Any]]) -> None:
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to apply the events")
    wait_until(lambda: decided(env.settings), 180, "the worker to decide what became due")


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def firings(env: Env, worker: Worker) -> list[TriggerMessage]:
    fired = int(worker.metric("cdpulse_triggers_total", {"rule": "churn_risk", "outcome": "fired"}))
    records = consume_all(env.settings, env.settings.topic_triggers, fired)
    messages = [TriggerMessage.model_validate_json(r.value) for r in records]
    assert len(messages) == fired
    return messages


def gate_count(worker: Worker, action: str) -> float:
    labels = {"rule": "churn_risk", "action": action}
    return worker.metric("cdpulse_triggers_model_gate_total", labels)


def test_a_degraded_model_holds_the_churn_trigger_until_a_healthy_one_scores(
    env: Env, tmp_path: Path
) -> None:
    degraded, healthy = learned(drifted=True), learned(drifted=False)
    assert degraded.health.status == "degraded" and healthy.health.status == "ok"
    healthy = dataclasses.replace(healthy, version=2)
    worker, api = start(env, tmp_path, degraded, on_degraded="hold")
    events = list(Shop(300, 5, seed=4).events())
    cut = DEFAULT_START + timedelta(days=3)
    stream(env, (e for e in events if at(e) < cut))

    # While the model is degraded: nothing fires, every crossing is held and counted.
    held = worker.metric("cdpulse_triggers_total", {"rule": "churn_risk", "outcome": "held"})
    assert firings(env, worker) == []
    assert held > 0 and gate_count(worker, "hold") == held
    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    reasons = list(degraded.health.reasons)
    shown: dict[str, int] = {}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for customer in customers:
            found = http.get(f"/v1/profiles/{customer}")
            if found.status_code == 404:
                continue  # first seen after the cut
            document = found.json()
            if document["churn"] is None:
                continue  # no personalization consent: no score
            assert document["churn"]["quality"] == {"status": "degraded", "reasons": reasons}
            if document["churn"]["at_last_event"]["risk"] is not None:
                assert document["churn"]["at_last_event"]["degraded"] == reasons
            view = http.get(f"/v1/profiles/{customer}/triggers").json()
            for entry in view["model_gated"]:
                assert entry["rule"] == "churn_risk" and entry["action"] == "hold"
                assert entry["reason"] == "churn model degraded: " + "; ".join(reasons)
                shown[customer] = shown.get(customer, 0) + 1
    assert 0 < sum(shown.values()) <= held

    # A healthy snapshot: the rest of the shop is scored by it, and the held fire.
    publish(env, healthy)
    loaded(worker, 2)
    stream(env, (e for e in events if at(e) >= cut))
    messages = firings(env, worker)
    assert messages, "no churn trigger fired once the model was healthy"
    for message in messages:
        key = message.trigger_id.split(":", 2)[2]
        assert key.startswith("v2@"), f"{message.trigger_id}: fired on the degraded model"
    assert {m.customer_id for m in messages} & set(shown), "no held customer fired later"
    with httpx.Client(base_url=api.url, timeout=10) as http:
        path = f"/v1/profiles/{messages[0].customer_id}"
        wait_until(
            lambda: http.get(path).json()["churn"]["model_version"] == 2,
            60,
            "the api to load churn snapshot 2",
        )
        document = http.get(path).json()
    assert document["churn"]["quality"] == {"status": "ok", "reasons": []}
    assert document["churn"]["at_last_event"]["degraded"] == []


def test_a_degraded_model_falls_back_to_the_rules_condition(env: Env, tmp_path: Path) -> None:
    degraded = learned(drifted=True)
    worker, api = start(env, tmp_path, degraded, on_degraded="fallback", fallback=FALLBACK)
    events = list(Shop(300, 5, seed=4).events())
    stream(env, events)

    messages = firings(env, worker)
    assert messages and gate_count(worker, "fallback") == len(messages)
    assert gate_count(worker, "hold") == gate_count(worker, "suppress") == 0
    # The oracle: a customer fires only once an order of theirs is applied.
    orders: dict[str, list[datetime]] = {}
    for e in events:
        if e["type"] == "order_completed" and e.get("customer_id"):
            orders.setdefault(e["customer_id"], []).append(at(e))
    assert len({m.customer_id for m in messages}) == len(messages), "a customer fired twice"
    for message in messages:
        assert message.reasons[0] == f"churn model degraded; fallback {FALLBACK} holds"
        assert any(t <= message.at for t in orders.get(message.customer_id, [])), message
    with httpx.Client(base_url=api.url, timeout=10) as http:
        view = http.get(f"/v1/profiles/{messages[0].customer_id}/triggers").json()
    assert [e["action"] for e in view["model_gated"]] == ["fallback"]
