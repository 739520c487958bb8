"""Nothing leaks: personal traits, as text or as numbers, sent through the collector,
``cdpulse.producer.Producer`` and ``cdpulse produce``, are in no byte of the raw input
topic, and the profiles hold only their pseudonyms (README: Privacy and security)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from cdpulse.privacy.data_keys import unseal
from cdpulse.producer import Producer
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.integration.test_privacy import _values
from tests.oracle import canonical, is_pseudonym, pseudonym

ROUTES = ("collector", "producer", "produce")
# A configured personal trait besides the defaults, given as a number.
PERSONAL = {
    "CDPULSE_TRAIT_ALLOW_LIST": '["email", "phone", "country", "loyalty_number"]',
    "CDPULSE_PERSONAL_TRAITS": '["email", "phone", "loyalty_number"]',
}


def _identify(route: str, n: int, traits: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{route}-{n}",
        "type": "identify",
        "timestamp": 1_767_225_600_000 + n,
        "customer_id": f"C-{route}-{n}",
        "anonymous_id": f"A-{route}-{n}",
        "channel": "web",
        "properties": {"traits": traits},
    }


def _planted(rng: random.Random, env: Env, route: str, n: int) -> dict[str, Any]:
    """Traits of values found nowhere else: a phone as text, a number or an integral float."""
    digits = rng.randrange(10**12, 10**13)
    phone: Any = [f"+49 {digits}", digits, float(digits)][n]
    return {
        "email": f"{route}.{n}.{env.name}@Example.com",
        "phone": phone,
        "loyalty_number": rng.randrange(10**11, 10**12),
        "country": "DE",
    }


def _leaks(value: Any) -> list[bytes]:
    """Every spelling of ``value`` that must not appear in a message."""
    text = canonical(value)
    spellings = {text, text.lower(), text.replace(" ", "").replace("+", ""), json.dumps(value)}
    return [s.encode() for s in spellings]


def test_personal_traits_reach_kafka_and_redis_only_as_pseudonyms_by_every_route(
    env: Env, tmp_path: Path
) -> None:
    variables = {**env.variables, **PERSONAL}
    settings = env.settings.model_copy(
        update={
            "trait_allow_list": ["email", "phone", "country", "loyalty_number"],
            "personal_traits": ["email", "phone", "loyalty_number"],
        }
    )
    roles = env.roles(**PERSONAL)
    rng = random.Random(env.name)
    events = {r: [_identify(r, n, _planted(rng, env, r, n)) for n in range(3)] for r in ROUTES}

    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        posted = http.post("/v1/events", json=events["collector"])
        assert posted.status_code == 200, posted.text
    with Producer.from_settings(settings) as producer:
        for event in events["producer"]:
            producer.send(event)
    lines = tmp_path / "identifies.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in events["produce"]))
    sent = subprocess.run(
        [sys.executable, "-m", "cdpulse", "produce", str(lines)],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sent.returncode == 0, sent.stderr
    assert "sent 3 events" in sent.stderr
    wait_until(lambda: drained(settings), 120, "the worker to apply the identify events")

    everything = [e for route in ROUTES for e in events[route]]
    secrets = {
        spelling: event["event_id"]
        for event in everything
        for name, value in event["properties"]["traits"].items()
        if name != "country"
        for spelling in _leaks(value)
    }
    records = consume_all(settings, settings.topic_customers, len(everything))
    assert len(records) == len(everything)
    for record in records:
        message = record.value + (record.key or b"")
        leaked = [event_id for s, event_id in secrets.items() if s in message]
        assert not leaked, f"a record of {leaked[0]} holds a personal value in clear"

    client = env.redis
    keys = list(client.scan_iter(match=f"{env.name}:*", count=1000))
    assert keys
    for key in keys:
        for value in _values(client, key):
            leaked = [event_id for s, event_id in secrets.items() if s in value]
            assert not leaked, f"{key!r} holds a personal value of {leaked[0]} in clear"

    by_id = {json.loads(r.value)["event_id"]: json.loads(r.value) for r in records}
    for event in everything:
        customer, traits = event["customer_id"], event["properties"]["traits"]
        profile = httpx.get(f"{roles.api.url}/v1/profiles/{customer}", timeout=10).json()
        personal = {n: pseudonym(n, v) for n, v in traits.items() if n != "country"}
        assert profile["traits"] == {**personal, "country": "DE"}, event["event_id"]
        assert all(is_pseudonym(p) for p in personal.values())
        # Kafka holds the same pseudonyms, each with its value sealed beside it.
        key = client.get(f"{env.name}:{{{customer}}}:datakey")
        assert isinstance(key, bytes)
        held = by_id[event["event_id"]]["properties"]["traits"]
        for name, value in traits.items():
            if name != "country":
                assert held[name] == personal[name]
                assert unseal(key, customer, held[f"{name}_sealed"]) == canonical(value)
