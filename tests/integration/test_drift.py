"""Drift on the real Kafka, Redis, learner and api: churn examples whose inputs move in
the last week of event time reach a live learner through its training topic; its drift
report, the model card's ``drift_status`` and the learner's ``/metrics`` flag the input
that moved and only it, with the very figures an in-process learner and monitor compute
from the same examples (README: Online models, Drift)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import httpx
import msgspec
from kafka import KafkaProducer

from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.drift import DAY, DriftMonitor, DriftWindows
from cdpulse.models.health import HealthPolicy
from cdpulse.store.keys import Keys
from tests.integration.conftest import Env, caught_up, wait_until

MOVED = "events_30d"
DAYS, PER_DAY = 40, 30


def examples() -> list[Example]:
    """Churn examples over 40 days of decision time; from day 33 on, customers' 30-day
    event counts are four times what they were, every other input as before."""
    rng = random.Random(11)
    out = []
    for day in range(DAYS):
        for n in range(PER_DAY):
            features = [rng.gauss(0, 1) for _ in FEATURE_NAMES]
            events = rng.gammavariate(2.0, 5.0) * (4 if day >= DAYS - 7 else 1)
            features[FEATURE_NAMES.index(MOVED)] = events
            label = int(rng.random() < 1 / (1 + math.exp(0.2 * events - 2)))
            at = (20_000 + day) * DAY + n * 1000
            out.append(Example(f"C-{day}-{n}", at - 30 * DAY, at, label, features))
    return out


def learned(env: Env, sent: list[Example]) -> None:
    """Send churn examples to the training topic, as a worker does, in order; wait until
    the learner has learned them all."""
    producer = KafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap, acks="all")
    try:
        for example in sent:
            producer.send(env.settings.topic_training, example.to_json())
        producer.flush()
    finally:
        producer.close()
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_training), 120, "the learner to learn"
    )


def test_an_input_that_moved_is_flagged_on_the_card_and_the_metrics(env: Env) -> None:
    learner = env.learner(CDPULSE_DRIFT_SECONDS="1")
    api = env.api()
    sent = examples()
    learned(env, sent)

    # The oracle: the same examples, in the topic's order, through an in-process learner
    # and monitor.
    twin = ChurnLearner.fresh(env.settings.churn_model, HealthPolicy.from_settings(env.settings))
    monitor = DriftMonitor(FEATURE_NAMES)
    monitor.observe_learned(twin.learn(list(enumerate(sent))).scored)
    windows = DriftWindows(7, 28, None)
    expected = json.loads(msgspec.json.encode(monitor.report(windows, threshold=0.25)))
    assert expected["status"] == "drifted"

    key = Keys(env.name).drift_report("churn")

    def reported() -> dict[str, Any] | None:
        raw = env.redis.get(key)
        found = None if raw is None else json.loads(raw)
        return found if found and found["score"]["current"] == 7 * PER_DAY else None

    wait_until(lambda: reported() is not None, 60, "a drift report over every example")
    assert reported() == expected

    def card() -> dict[str, Any]:
        """The churn card, {} until the api has loaded the snapshot (its refresh timer)."""
        answer = httpx.get(f"{api.url}/v1/models/churn", timeout=10)
        found: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        return found

    wait_until(lambda: card().get("drift_status") == "drifted", 60, "the card to show drift")
    drift = card()["drift"]
    assert drift["report"] == expected
    flagged = [f["name"] for f in drift["report"]["features"] if f["status"] == "drifted"]
    assert flagged == [MOVED]
    assert drift["detector"] == "ADWIN on the error |y - p|"
    listed = httpx.get(f"{api.url}/v1/models", timeout=10).json()["models"]
    assert {m["name"]: m["drift_status"] for m in listed}["churn"] == "drifted"

    # Health: churn's card says the health its newest snapshot was published with (the
    # twin's, over every example: the moved input degrades it); every other card and entry
    # of the list says its own, the same in both, "no model yet" where the card is a 404.
    health = twin.snapshot().health.to_json()
    assert health["status"] == "degraded"
    assert any(r.startswith(f"input {MOVED} drifted (PSI ") for r in health["reasons"])
    wait_until(lambda: card().get("health") == health, 60, "the newest snapshot's health")
    listed = httpx.get(f"{api.url}/v1/models", timeout=10).json()["models"]
    assert {m["name"]: m["health"] for m in listed}["churn"] == health
    for entry in listed:
        answer = httpx.get(f"{api.url}/v1/models/{entry['name']}", timeout=10)
        found = entry["health"]
        assert found["status"] in {"ok", "degraded", "unknown"}, entry
        assert (found["status"] == "ok") == (found["reasons"] == []), entry
        if answer.status_code == 404:
            assert found == {"status": "unknown", "reasons": ["no model yet"]}, entry
        else:
            assert answer.json()["health"] == found, entry

    assert learner.metric("cdpulse_model_drift_status", {"model": "churn"}) == 2
    for feature in expected["features"]:
        labels = {"model": "churn", "feature": feature["name"]}
        assert learner.metric("cdpulse_model_drift_psi", labels) == feature["psi"], labels
    defined = {"model": "churn", "metric": "input_drift"}
    assert learner.metric("cdpulse_model_quality_defined", defined) == 1
