"""Online churn learning end to end, and the same result from ``cdpulse evaluate``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from cdpulse.contract.partitions import partition_of
from cdpulse.importer import CsvFormat, ImportedOrder, OrderColumns, read_orders
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.scoring import health_of
from cdpulse.models.clv.lifetime import OrderSummary, refit
from cdpulse.models.clv.model import summary_from_profile
from cdpulse.pipeline.replay import replay_churn
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import (
    Env,
    caught_up,
    consume_all,
    decided,
    drained,
    wait_until,
)
from tests.oracle import pseudonym_id


def millis(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_churn_is_learned_live_scored_with_reasons_and_evaluate_agrees(
    env: Env, tmp_path: Path
) -> None:
    events = list(Shop(customers=250, days=75, seed=5).events())
    # No RFM segments: their sweep (on the learner) would be a second writer of profiles,
    # and a worker's save it refuses is decided again and its examples published again
    # (at least once). Here every label must reach the learner exactly once, in order.
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    roles = env.roles(learner=True, CDPULSE_SEGMENTS_FILE=str(segments))
    worker, api, learner = roles.worker, roles.api, roles.learning
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    # The last labels are decided by the batch after the last one (an idle batch).
    wait_until(
        lambda: decided(env.settings) and caught_up(env.settings, env.settings.topic_training),
        300,
        "the worker to decide every label and the learner to learn every example",
    )
    labels = worker.metric("cdpulse_churn_labels_total")
    wait_until(
        lambda: learner.metric("cdpulse_model_examples", {"model": "churn"}) == labels,
        60,
        "the model metrics to show every label learned",
    )
    learned = labels
    version = learner.metric("cdpulse_model_version", {"model": "churn"})
    assert version >= 1
    assert 0.0 <= learner.metric("cdpulse_model_roc_auc", {"model": "churn"}) <= 1.0
    assert learner.metric("cdpulse_model_log_loss", {"model": "churn"}) > 0

    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    live: dict[str, float | None] = {}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        scored = next(
            c
            for c in customers
            if http.get(f"/v1/profiles/{c}").json()["consent"]["personalization"] is not False
        )
        # The api loads the learner's newest snapshot on its own refresh timer.
        wait_until(
            lambda: http.get(f"/v1/profiles/{scored}").json()["churn"]["model_version"] == version,
            60,
            f"the api to score with the newest churn snapshot (v{version:.0f})",
        )
        for customer in customers:
            document = http.get(f"/v1/profiles/{customer}").json()
            churn = document["churn"]
            if document["consent"]["personalization"] is False:
                assert churn is None  # README: consent matrix
                live[customer] = None
                continue
            assert 0.0 <= churn["risk"] <= 1.0
            assert len(churn["reasons"]) == 3 and all(churn["reasons"])
            assert churn["model_version"] == version
            live[customer] = churn["risk"]
            quality = churn["quality"]

    # The replay runs the same code over the same events in file order, cut into other
    # batches, while Kafka interleaved three topics and four partitions its own way.
    # Labels are decided in event time and learned in decision order, so the replay
    # must find the very same examples and end with the very same model and scores.
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_churn(lines, env.settings, partition_of))
    trained = [
        Example.from_json(r.value)
        for r in consume_all(env.settings, env.settings.topic_training, int(learned))
    ]
    # The topic names customers by pseudonym (README: Privacy and security).
    pseudonymous = [replace(e, profile_id=pseudonym_id(e.profile_id)) for e in replay.examples]
    assert trained == pseudonymous  # the same examples, in the same order
    assert replay.model["examples"] == learned > 1000
    assert replay.model["roc_auc"] == round(
        learner.metric("cdpulse_model_roc_auc", {"model": "churn"}), 4
    )
    mismatched = {c: (live[c], replay.scores[c]) for c in customers if live[c] != replay.scores[c]}
    assert not mismatched, f"{len(mismatched)} scores differ, e.g. {list(mismatched.items())[:3]}"
    # The model's health too: judged from the same examples in the same order.
    assert quality == health_of(replay.snapshot).to_json()
    assert quality["status"] in ("ok", "degraded", "unknown")


def test_lifetime_value_is_refitted_live_on_real_cdnow_orders(env: Env) -> None:
    """CDNOW's real 1997-98 purchases, imported as orders, streamed, valued live."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin is not None, "make venv installs lifetimes' data"
    path = Path(spec.origin).parent / "datasets" / "CDNOW_sample.txt"
    orders = [
        row.event
        for row in read_orders(
            path, OrderColumns("1", "3", "5"), CsvFormat("whitespace", header=False)
        )
        if isinstance(row, ImportedOrder)
    ]
    orders.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    roles = env.roles(learner=True, CDPULSE_CLV_REFIT_SECONDS="2")
    learner = roles.learning
    with Producer.from_settings(env.settings) as producer:
        for event in orders:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")
    # Two refits after the last order: every summary final, as_of the final watermark.
    version = learner.metric("cdpulse_model_version", {"model": "clv"})
    wait_until(
        lambda: learner.metric("cdpulse_model_version", {"model": "clv"}) > version + 1,
        60,
        "two lifetime-value refits after the stream",
    )

    customers = sorted({e["customer_id"] for e in orders})
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        # The api loads the learner's snapshots on its own refresh timer.
        wait_until(
            lambda: (
                (http.get(f"/v1/profiles/{customers[0]}").json()["clv"]["model_version"] or 0)
                > version + 1
            ),
            60,
            "the api to value with a refit that saw every order",
        )
        documents = {c: http.get(f"/v1/profiles/{c}").json() for c in customers}
    as_of = max(millis(d["last_seen"]) for d in documents.values())
    summaries = [
        OrderSummary(
            d["orders"], millis(d["first_order_at"]), millis(d["last_order_at"]), d["revenue"]
        )
        for d in documents.values()
    ]
    fitted = refit(summaries, as_of, None)
    assert fitted is not None and fitted.customers == len(customers) == 2357
    assert learner.metric("cdpulse_clv_customers") == 2357
    for customer, document in documents.items():
        served = document["clv"]
        wanted = fitted.model.predict(
            *summary_from_profile(
                document["orders"],
                millis(document["first_order_at"]),
                millis(document["last_order_at"]),
                document["revenue"],
                as_of,
            ),
            horizon=90,
        )
        assert 0.0 <= served["p_alive"] <= 1.0
        assert len(served["reasons"]) == 3 and all(served["reasons"])
        assert served["p_alive"] == pytest.approx(float(wanted.p_alive), abs=2e-3), customer
        assert served["expected_purchases_90d"] == pytest.approx(
            float(wanted.expected_purchases), rel=1e-2, abs=2e-3
        )
        assert served["expected_value_90d"] == pytest.approx(
            float(wanted.expected_value), rel=1e-2, abs=0.05
        )
