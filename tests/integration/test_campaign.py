"""Campaign response learned live from a simulated shop, and the same from ``evaluate``."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path

import httpx

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
    worker, learner, api = roles.worker, roles.learning, roles.api
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
    version = learner.metric("cdpulse_model_version", {"model": "campaign"})
    assert version >= 1

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

    # Scored on request by the api, with the newest snapshot: the replay's scores, with
    # reasons on every one; none without personalization consent. (Versions count
    # publishes, one per batch learned: the learner's batches are not the replay's.)
    customers = sorted(replay.scores)
    assert len(customers) > 100
    with httpx.Client(base_url=api.url, timeout=10) as http:

        def served(customer: str) -> httpx.Response:
            return http.get(f"/v1/profiles/{customer}/propensity?campaign=nl-1&kind=email")

        scored = next(c for c in customers if replay.scores[c] is not None)
        wait_until(
            lambda: served(scored).json().get("model_version") == version,
            60,
            f"the api to score with the newest campaign snapshot (v{version:.0f})",
        )
        mismatched = {}
        for customer in customers:
            answer, want = served(customer), replay.scores[customer]
            if want is None:
                assert answer.status_code == 451, customer  # README: consent matrix
                continue
            document = answer.json()
            assert document["campaign"] == "nl-1" and document["kind"] == "email"
            assert len(document["reasons"]) == 3 and all(document["reasons"])
            assert document["model_version"] == version
            got = {k: document[k] for k in ("propensity", "reasons")}
            if got != {k: want[k] for k in got}:
                mismatched[customer] = (got, want)
    assert not mismatched, f"{len(mismatched)} scores differ, e.g. {list(mismatched.items())[:2]}"
    assert any(replay.scores[c] is None for c in customers)  # the case has refusals
