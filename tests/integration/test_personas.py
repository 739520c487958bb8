"""Personas learned live from a simulated shop equal the in-process replay's: the examples
on the training topic, the learner's snapshot, and every customer's persona on read."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import httpx

from cdpulse.contract.partitions import partition_of
from cdpulse.models.personas_labels import PersonaExample
from cdpulse.pipeline.persona_replay import replay_personas
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, caught_up, consume_all, decided, drained, wait_until
from tests.oracle import pseudonym_id

SMALL = {"persona_warmup": 40, "persona_checkpoint_examples": 50}


def test_personas_are_learned_live_and_equal_the_replay(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=150, days=40, seed=11).events())
    # No RFM segments: their sweep would be a second writer of profiles, and a worker's
    # save it refuses is decided again, its examples published again (at least once).
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    overrides = {f"CDPULSE_{name.upper()}": str(value) for name, value in SMALL.items()}
    roles = env.roles(learner=True, CDPULSE_SEGMENTS_FILE=str(segments), **overrides)
    learner, api = roles.learning, roles.api
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)

    # The replay: the same code over the same events in file order, cut into other
    # batches, while Kafka interleaved three topics and four partitions its own way.
    settings = env.settings.model_copy(update=SMALL)
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_personas(lines, settings, partition_of))
    expected = len(replay.examples)
    assert expected > SMALL["persona_warmup"] + 2 * SMALL["persona_checkpoint_examples"]

    topic = settings.topic_persona_training
    wait_until(lambda: drained(settings), 600, "the worker to drain its topics")
    wait_until(
        lambda: decided(settings) and caught_up(settings, topic),
        300,
        "the worker to decide every example and the learner to learn them",
    )
    trained = [PersonaExample.from_json(r.value) for r in consume_all(settings, topic, expected)]
    pseudonymous = [replace(e, profile_id=pseudonym_id(e.profile_id)) for e in replay.examples]
    assert trained == pseudonymous  # the very same examples, in the same order
    wait_until(
        lambda: learner.metric("cdpulse_model_examples", {"model": "personas"}) == expected,
        60,
        "the learner's metrics to show every example learned",
    )
    version = learner.metric("cdpulse_model_version", {"model": "personas"})
    want = replay.state
    assert want.view is not None and want.quality is not None
    assert learner.metric("cdpulse_persona_silhouette") == want.quality.silhouette
    assert learner.metric("cdpulse_persona_stability") == want.quality.stability
    for persona in want.view.personas:
        labels = {"persona": str(persona.id)}
        assert learner.metric("cdpulse_persona_size", labels) == persona.size

    with httpx.Client(base_url=api.url, timeout=10) as http:
        wait_until(
            lambda: http.get("/v1/personas").json().get("model_version") == version,
            60,
            f"the api to serve the newest persona snapshot (v{version:.0f})",
        )
        served = http.get("/v1/personas").json()
        assert served["examples"] == expected
        assert served["silhouette"] == want.quality.silhouette
        assert [
            (p["id"], p["size"], p["centroid"], p["description"], p["members"], p["customer_share"])
            for p in served["personas"]
        ] == [
            (
                p.id,
                p.size,
                p.centre,
                p.description,
                [pseudonym_id(c) for c in want.members.get(p.id, [])],
                want.customer_shares.get(p.id, 0.0),
            )
            for p in want.view.personas
        ]

        card = http.get("/v1/models/personas").json()
        assert card["examples"] == expected and card["version"] == version
        assert card["quality"]["silhouette"]["value"] == want.quality.silhouette
        assert card["health"]["status"] == "unknown"

        # Every customer's persona on read: the replay's, read from the same profile.
        mismatched = {}
        for customer, persona in replay.personas.items():
            document = http.get(f"/v1/profiles/{customer}").json()
            got = document["persona"]
            if persona is None or got is None:
                if got != persona:
                    mismatched[customer] = (got, persona)
                continue
            assert got["model_version"] == version
            if {**got, "model_version": 0} != {**persona, "model_version": 0}:
                mismatched[customer] = (got, persona)
    assert not mismatched, f"{len(mismatched)} personas differ, e.g. {list(mismatched.items())[:2]}"
    found = [p for p in replay.personas.values() if p is not None]
    assert len(found) > 30 and len({p["id"] for p in found}) > 1
    assert None in replay.personas.values()  # consent refusals, or no order kept
