"""Custom events end to end on real Kafka, Redis, worker and api processes.

A shop sends its own tracking plan through the Segment batch route: wishlist adds (which
an operator registered a JSON Schema for), a video view, and the page views, identify and
order around them. The profile must equal the oracle's (``tests/oracle.py``, its custom
counts computed apart from the engine) for the events mapped here by hand; a CEL segment
on ``custom.wishlist_added_7d`` must take the customer in, and the ``win_back`` rule
naming that segment fire once; ``custom_event`` rules fire once per matching event (a
video watched 30 seconds or more, every valid wishlist add); a wishlist add against its
schema must be dead-lettered with the failing path, both when the collector takes it and
when it was produced straight to Kafka (the worker's decode stage); and the batch sent
again, as an SDK's retry does, must change nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from cdpulse.contract.custom_schemas import CustomSchemas
from cdpulse.contract.trigger import TriggerMessage
from cdpulse.producer import Producer
from tests.integration.conftest import Env, consume_all, decided, drained, wait_until
from tests.oracle import differences, expected, rfc3339

MINUTE = 60_000
WISHLIST = {
    "type": "object",
    "required": ["product_id"],
    "properties": {
        "product_id": {"type": "string", "minLength": 1},
        "price": {"type": "number", "minimum": 0},
    },
}
SEGMENTS = {
    "rfm": False,
    "segments": [{"name": "wishlisters", "when": "custom.wishlist_added_7d > 0"}],
}
RULES = {
    "rules": [
        {
            "name": "wishlist_nudge",
            "kind": "win_back",  # fires when a customer enters the segment it names
            "segment": "wishlisters",
            "marketing": False,
        },
        # Rules on the custom events themselves: one firing per matching event.
        {
            "name": "video_fan",
            "kind": "custom_event",
            "event": "video_played",
            "when": "event.seconds >= 30 && custom.video_played >= 1",
            "marketing": False,
        },
        {"name": "wished", "kind": "custom_event", "event": "wishlist_added", "marketing": False},
    ]
}


def segment_call(n: int, t0: int, user: str, call: str, **fields: Any) -> dict[str, Any]:
    """The n-th Segment message: a minute after the one before, without ``sentAt`` (so its
    event time is its ``timestamp``)."""
    return {
        "type": call,
        "messageId": f"m-{n}",
        "userId": user,
        "timestamp": rfc3339(t0 + n * MINUTE),
        **fields,
    }


def contract_event(message: dict[str, Any]) -> dict[str, Any]:
    """What ``message`` means in the contract, restated here from the README's mapping."""
    event: dict[str, Any] = {
        "event_id": message["messageId"],
        "timestamp": message["timestamp"],
        "customer_id": message["userId"],
        "channel": "web",
    }
    if message["type"] == "page":
        return event | {"type": "page_viewed", "properties": {"url": message["properties"]["url"]}}
    if message["type"] == "identify":
        return event | {"type": "identify", "properties": {}}
    if message["event"] == "Order Completed":
        p = message["properties"]
        items = [
            {k: x[k] for k in ("product_id", "category", "price", "quantity")}
            for x in p["products"]
        ]
        order = {"order_id": p["order_id"], "revenue": p["revenue"], "currency": p["currency"]}
        return event | {"type": "order_completed", "properties": order | {"items": items}}
    name = message["event"].lower().replace(" ", "_")
    return event | {"type": "custom", "name": name, "properties": message["properties"]}


def test_custom_events_count_segment_trigger_and_are_held_to_their_schema(
    env: Env, tmp_path: Path
) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "wishlist_added.json").write_text(json.dumps(WISHLIST), encoding="utf-8")
    files = {"segments.yaml": SEGMENTS, "rules.yaml": RULES}
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content), encoding="utf-8")
    overrides = {
        # One partition per topic: the low watermark (which decides triggers) then needs
        # one event on each of the three topics.
        "CDPULSE_TOPIC_PARTITIONS": "1",
        "CDPULSE_CUSTOM_EVENT_SCHEMAS": str(folder),
        "CDPULSE_SEGMENTS_FILE": str(tmp_path / "segments.yaml"),
        "CDPULSE_TRIGGER_RULES": str(tmp_path / "rules.yaml"),
        "CDPULSE_TRIGGER_LATENESS_SECONDS": "0",
    }
    settings = env.settings.model_copy(
        update={"topic_partitions": 1, "trigger_lateness_seconds": 0.0}
    )
    roles = env.roles(**overrides)

    t0 = (int(datetime.now(UTC).timestamp() * 1000) - 2 * 3_600_000) // MINUTE * MINUTE
    order = {
        "order_id": "O-1",
        "revenue": 20.0,
        "currency": "EUR",
        "products": [{"product_id": "P-1", "category": "games", "price": 20.0, "quantity": 1}],
    }

    def wish(**properties: Any) -> dict[str, Any]:
        return {"event": "Wishlist Added", "properties": properties}

    calls = [
        ("C-1", "identify", {}),
        ("C-1", "page", {"properties": {"url": "https://shop.example/"}}),
        ("C-1", "track", wish(product_id="P-1", price=20.0)),
        ("C-1", "track", {"event": "Video Played", "properties": {"seconds": 31}}),
        ("C-1", "track", wish(product_id="P-2", price=-5)),
        ("C-2", "track", {"event": "Video Played", "properties": {"seconds": 4}}),
        ("C-1", "track", wish(product_id="P-3")),
        ("C-1", "track", {"event": "Order Completed", "properties": order}),
        # The newest event of each topic moves the low watermark past the others.
        ("C-2", "page", {"properties": {"url": "https://shop.example/sale"}}),
        ("C-2", "identify", {}),
    ]  # fmt: skip
    batch = [segment_call(n, t0, user, call, **f) for n, (user, call, f) in enumerate(calls)]
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        answer = http.post("/v1/batch", json={"batch": batch}).json()
    assert (answer["accepted"], answer["rejected"]) == (len(batch) - 1, 1), answer
    (refused,) = [r for r in answer["results"] if r["status"] == "rejected"]
    assert (refused["index"], refused["reason"]) == (4, "schema_violation")
    assert "'properties.price': does not satisfy 'minimum' 0 [minimum]" in refused["detail"]

    # Produced straight to Kafka, past the collector: the worker holds it to the schema.
    straight = {
        "event_id": "k-1",
        "type": "custom",
        "name": "wishlist_added",
        "timestamp": t0 + 2 * MINUTE + 30_000,
        "customer_id": "C-1",
        "channel": "web",
        "properties": {"product_id": "P-9", "price": "cheap"},
    }
    with Producer.from_settings(settings, create_topics=False) as producer:
        producer.send_raw(settings.topic_clickstream, json.dumps(straight).encode(), b"C-1")

    events = [contract_event(m) for m in batch] + [straight]
    want = expected(
        events, now=datetime.now(UTC), schemas=CustomSchemas({"wishlist_added": WISHLIST})
    )
    # Three wishlist adds, two of them against the schema (one through each path).
    counted = {n: c["total"] for n, c in want.profiles["C-1"]["custom_counts"].items()}
    assert counted == {"video_played": 1, "wishlist_added": 2}

    def profiles_equal_the_oracle() -> list[str]:
        with httpx.Client(base_url=roles.api.url, timeout=10) as http:
            got = {c: http.get(f"/v1/profiles/{c}") for c in want.profiles}
        return [
            line
            for c, response in got.items()
            for line in (
                differences(response.json(), want.profiles[c])
                if response.status_code == 200
                else [f"{c}: {response.status_code}"]
            )
        ]

    wait_until(lambda: drained(settings), 120, "the worker to drain its topics")
    wait_until(lambda: decided(settings), 120, "the worker to decide what became due")
    assert profiles_equal_the_oracle() == []

    transitions = [json.loads(r.value) for r in consume_all(settings, settings.topic_segments, 1)]
    assert [(t["customer_id"], t["segment"], t["change"]) for t in transitions] == [
        ("C-1", "wishlisters", "entered")
    ]
    # decided on the profile as of its batch: at the first wishlist add or later
    entered = datetime.fromisoformat(transitions[0]["at"].replace("Z", "+00:00"))
    assert t0 + 2 * MINUTE <= entered.timestamp() * 1000 <= t0 + 9 * MINUTE
    records = consume_all(settings, settings.topic_triggers, 4)
    fired = {
        m.trigger_id: m for m in (TriggerMessage.model_validate_json(r.value) for r in records)
    }
    assert len(records) == len(fired) == 4
    (nudge,) = [m for m in fired.values() if m.rule == "wishlist_nudge"]
    assert (nudge.customer_id, nudge.reasons) == ("C-1", ["entered segment 'wishlisters'"])
    # The custom event rules: C-1's 31-second video (not C-2's 4 seconds) and its two
    # wishlist adds the schema let through (not the two dead-lettered), by event id.
    custom = {i for i, m in fired.items() if m.kind == "custom_event"}
    assert custom == {"video_fan:C-1:m-3", "wished:C-1:m-2", "wished:C-1:m-6"}
    assert fired["wished:C-1:m-2"].products == ["P-1"]
    assert fired["video_fan:C-1:m-3"].reasons == [
        "custom event video_played where event.seconds >= 30 && custom.video_played >= 1"
    ]

    letters = [json.loads(r.value) for r in consume_all(settings, settings.topic_dead_letter, 2)]
    assert {(d["topic"], d["reason"], d["event_id"]) for d in letters} == {
        (settings.topic_clickstream, "schema_violation", "k-1"),
        ("http", "schema_violation", "m-4"),
    }
    assert len(letters) == 2
    from_kafka = next(d for d in letters if d["topic"] == settings.topic_clickstream)
    assert "'properties.price': does not satisfy 'type' \"number\" [type]" in from_kafka["detail"]
    assert "cheap" not in from_kafka["detail"]

    # The SDK's retry: the same batch again. Each repeat is dropped by its messageId.
    duplicates = roles.worker.metric("cdpulse_duplicates_total")
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        again = http.post("/v1/batch", json={"batch": batch}).json()
    assert (again["accepted"], again["rejected"]) == (len(batch) - 1, 1)
    wait_until(
        lambda: roles.worker.metric("cdpulse_duplicates_total") >= duplicates + len(batch) - 1,
        120,
        "the worker to drop every repeat",
    )
    wait_until(lambda: drained(settings), 120, "the worker to drain its topics")
    assert profiles_equal_the_oracle() == []
    # The worker published before it committed (drained): a repeat would be there by now.
    assert len(consume_all(settings, settings.topic_segments, 1)) == 1
    assert len(consume_all(settings, settings.topic_triggers, 4)) == 4
