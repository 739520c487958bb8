"""Online churn learning end to end, and the same result from ``cdpulse evaluate``."""

from __future__ import annotations

import asyncio
import json

import httpx

from cdpulse.models.evaluate import replay_churn
from cdpulse.models.labels import Example
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, consume_all, drained, wait_until


def _learner_caught_up(env: Env) -> bool:
    """The single learner has committed every training example."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=env.settings.kafka_bootstrap)
    try:
        tp = TopicPartition(env.settings.topic_training, 0)
        end = consumer.end_offsets([tp])[tp]
        committed = admin.list_group_offsets(env.settings.app_id).get(env.settings.app_id, {})
        return end > 0 and tp in committed and committed[tp].offset >= end
    finally:
        admin.close()
        consumer.close()


def test_churn_is_learned_live_scored_with_reasons_and_evaluate_agrees(env: Env) -> None:
    events = list(Shop(customers=250, days=75, seed=5).events())
    worker = env.worker()
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    wait_until(lambda: _learner_caught_up(env), 300, "the learner to learn every example")
    labels = worker.metric("cdpulse_churn_labels_total")
    wait_until(
        lambda: worker.metric("cdpulse_model_examples", {"model": "churn"}) == labels,
        60,
        "the model metrics to show every label learned",
    )
    learned = labels
    assert worker.metric("cdpulse_model_version", {"model": "churn"}) >= 1
    assert 0.0 <= worker.metric("cdpulse_model_roc_auc", {"model": "churn"}) <= 1.0
    assert worker.metric("cdpulse_model_log_loss", {"model": "churn"}) > 0

    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    live: dict[str, float] = {}
    with httpx.Client(base_url=worker.url, timeout=10) as http:
        for customer in customers:
            churn = http.get(f"/v1/profiles/{customer}").json()["churn"]
            assert 0.0 <= churn["risk"] <= 1.0
            assert len(churn["reasons"]) == 3 and all(churn["reasons"])
            assert churn["model_version"] >= 1
            live[customer] = churn["risk"]

    # The replay runs the same code over the same events in file order, cut into other
    # batches, while Kafka interleaved three topics and four partitions its own way.
    # Labels are decided in event time and learned in decision order, so the replay
    # must find the very same examples and end with the very same model and scores.
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_churn(lines, env.settings))
    trained = [
        Example.from_json(r.value)
        for r in consume_all(env.settings, env.settings.topic_training, int(learned))
    ]
    assert trained == replay.examples  # the same examples, in the same order
    assert replay.model["examples"] == learned > 1000
    assert replay.model["roc_auc"] == round(
        worker.metric("cdpulse_model_roc_auc", {"model": "churn"}), 4
    )
    mismatched = {c: (live[c], replay.scores[c]) for c in customers if live[c] != replay.scores[c]}
    assert not mismatched, f"{len(mismatched)} scores differ, e.g. {list(mismatched.items())[:3]}"
