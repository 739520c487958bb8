"""Campaign response learned live from a simulated shop, and the same from ``evaluate``."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path

from cdpulse.contract.partitions import partition_of
from cdpulse.models.campaign.labels import CampaignExample
from cdpulse.pipeline.campaign_replay import replay_campaign
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, caught_up, consume_all, decided, drained, wait_until
from tests.oracle import pseudonym_id


def test_campaign_response_is_learned_live_and_evaluate_agrees(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=250, days=75, seed=5, responsive=True).events())
    # No RFM segments: their sweep would be a second writer of profiles, and a worker's
    # save it refuses is decided again, its labels published again (at least once).
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    roles = env.roles(learner=True, CDPULSE_SEGMENTS_FILE=str(segments))
    worker, learner = roles.worker, roles.learning
    # Before any label: the live quality is there, and unknown.
    assert learner.metric("cdpulse_model_examples", {"model": "campaign"}) == 0
    assert math.isnan(learner.metric("cdpulse_model_roc_auc", {"model": "campaign"}))
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    topic = env.settings.topic_campaign_training
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    wait_until(
        lambda: decided(env.settings) and caught_up(env.settings, topic),
        300,
        "the worker to decide every label and the learner to learn every exposure",
    )
    labels = worker.metric("cdpulse_campaign_labels_total")
    wait_until(
        lambda: learner.metric("cdpulse_model_examples", {"model": "campaign"}) == labels,
        60,
        "the model metrics to show every label learned",
    )
    assert learner.metric("cdpulse_model_version", {"model": "campaign"}) >= 1

    # The replay runs the same code over the same events in file order, cut into other
    # batches, while Kafka interleaved three topics and four partitions its own way:
    # the very same labelled exposures, in the same order, and the same live quality.
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_campaign(lines, env.settings, partition_of))
    trained = [CampaignExample.from_json(r.value) for r in consume_all(env.settings, topic, labels)]
    pseudonymous = [replace(e, profile_id=pseudonym_id(e.profile_id)) for e in replay.examples]
    assert trained == pseudonymous
    assert replay.model["examples"] == labels > 500
    assert 0 < replay.model["positives"] < labels
    for figure, name in (
        ("roc_auc", "cdpulse_model_roc_auc"),
        ("log_loss", "cdpulse_model_log_loss"),
    ):
        assert replay.model[figure] == round(learner.metric(name, {"model": "campaign"}), 4)
