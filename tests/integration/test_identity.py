"""The identity rules (README: Identity rules) through real Kafka, Redis, worker and api:
a known customer named as an identify's anonymous id is never merged away (the link is
dead-lettered ``identity_refused``), and a visitor linked before it was used as a
customer_id becomes a customer of its own."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from cdpulse.producer import Producer
from cdpulse.store.keys import keys_for
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.oracle import differences, expected

T0 = int(time.time() * 1000) - 3_600_000


def event(n: int, kind: str, **ids: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": f"id-{n}",
        "type": kind,
        "timestamp": T0 + n * 60_000,
        "channel": "web",
        **ids,
    }
    if kind == "page_viewed":
        out["properties"] = {"url": f"/{n}"}
    elif kind == "order_completed":
        item = {"product_id": "P1", "category": "shoes", "price": 20.0, "quantity": 1}
        out["properties"] = {
            "order_id": f"O{n}",
            "revenue": 20.0,
            "currency": "EUR",
            "items": [item],
        }
    return out


def test_identity_rules_through_the_engine(env: Env) -> None:
    worker, api = env.worker(), env.api()
    first = [
        event(1, "order_completed", customer_id="K"),
        event(2, "page_viewed", customer_id="K"),
        event(3, "page_viewed", anonymous_id="V"),
        event(4, "identify", customer_id="C", anonymous_id="V"),
    ]
    # Sent after the first part is applied: K is a known customer by then, V is C's.
    second = [
        event(5, "identify", customer_id="C", anonymous_id="K"),
        event(6, "order_completed", customer_id="V"),
        event(7, "page_viewed", anonymous_id="V"),
        event(8, "page_viewed", anonymous_id="K"),
    ]
    with Producer.from_settings(env.settings) as producer:
        for e in first:
            producer.send(e)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the first part")
    assert env.redis.get(keys_for(env.redis, env.name).alias("V")) == b"C"
    with Producer.from_settings(env.settings) as producer:
        for e in second:
            producer.send(e)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the second part")

    letters = [
        json.loads(r.value) for r in consume_all(env.settings, env.settings.topic_dead_letter, 1)
    ]
    assert [(d["reason"], d["event_id"]) for d in letters] == [("identity_refused", "id-5")]
    assert "known_customer" in letters[0]["detail"]
    assert worker.metric("cdpulse_identity_refused_total", {"rule": "known_customer"}) == 1
    # no id is linked any more: K never was, V's customer event unlinked it
    assert sorted(env.redis.scan_iter(match=f"{env.name}:*:alias")) == []

    now, newest = datetime.now(UTC), T0 + 8 * 60_000  # the watermark profiles render at
    refused = {k: v for k, v in second[0].items() if k != "anonymous_id"}
    want = {
        # K: its own events only, its anonymous one too (a known customer's)
        "K": expected([first[0], first[1], second[3]], now=now, as_of=newest).profiles["K"],
        # C: V's past as a visitor (merged when linked) and the refused identify, applied
        "C": expected([first[2], first[3], refused], now=now, as_of=newest).profiles["C"],
        # V: a customer of its own from its first customer event
        "V": expected([second[1], second[2]], now=now, as_of=newest).profiles["V"],
    }
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for profile_id, wanted in want.items():
            got = http.get(f"/v1/profiles/{profile_id}").json()
            problems = differences(got, wanted)
            assert not problems, f"{profile_id}: " + "; ".join(problems)

        # C lists V (its past as a visitor), but erasing C leaves V, a customer now, alone.
        assert http.delete("/v1/profiles/C").status_code == 202
        wait_until(lambda: http.get("/v1/profiles/C").status_code == 404, 60, "C to be erased")
        fields = ("id", "customer_id", "events", "orders", "anonymous_ids")
        for profile_id in ("K", "V"):
            # the erasure moved the watermark to now: what it renders at changed
            got = http.get(f"/v1/profiles/{profile_id}").json()
            assert {f: got.get(f) for f in fields} == {f: want[profile_id][f] for f in fields}
