"""Privacy against the real Kafka, Redis and worker: erasure mid-stream, then a scan of
every Redis key and every output topic; the ledger; export (README: Privacy and security)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import httpx
import redis

from cdpulse.contract.topics import Topics
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, caught_up, consume_all, drained, wait_until
from tests.oracle import pseudonym, pseudonym_id


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    """Every byte string a key holds, whatever its type."""
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [b for kv in client.hgetall(key).items() for b in kv]
    if kind == b"zset":
        return [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    return []


def _linked(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """customer -> the anonymous ids its identify events link."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "identify" and e.get("anonymous_id"):
            out[e["customer_id"]].add(e["anonymous_id"])
    return out


def test_erased_customers_leave_nothing_readable_in_redis_or_the_output_topics(env: Env) -> None:
    events = list(Shop(customers=150, days=20, seed=7).events())
    half = len(events) // 2
    linked = _linked(events[:half])
    # customers linked to a visitor and active in both halves: erased mid-stream
    later = {e.get("customer_id") for e in events[half:]}
    chosen = sorted(c for c in linked if c in later)[:4]
    assert len(chosen) == 4, "the shop must give customers active on both sides of the cut"
    by_http, by_event = chosen[:2], chosen[2:]
    erased_ids = {i for c in chosen for i in (c, *linked[c])}
    emails = {f"{c}@example.com" for c in chosen}

    worker = env.worker(CDPULSE_RECO_SNAPSHOT_SECONDS="0.5")
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the first half to be applied")

    with httpx.Client(base_url=worker.url, timeout=10) as http:
        export = http.get(f"/v1/profiles/{chosen[0]}/export")
        assert export.status_code == 200
        document = export.json()
        assert document["customer_id"] == chosen[0]
        assert set(document["linked_ids"]) == {chosen[0], *linked[chosen[0]]}
        assert document["stored_profile"]["offsets"] and document["records_held"]
        assert document["profile"]["traits"]["email"] == pseudonym(
            "email", f"{chosen[0]}@example.com"
        )
        assert f"{chosen[0]}@example.com" not in export.text
        for customer in by_http:
            # an anonymous id resolves to its customer: erasing it erases the customer
            visitor = sorted(linked[customer])[0]
            response = http.delete(f"/v1/profiles/{visitor}")
            assert response.status_code == 202, response.text
    with Producer.from_settings(env.settings) as producer:
        for n, customer in enumerate(by_event):
            producer.send(
                {
                    "event_id": f"erase-{n}",
                    "type": "erasure_requested",
                    "timestamp": events[half]["timestamp"],
                    "customer_id": customer,
                    "channel": "call_center",
                    "properties": {"requested_by": "support-desk", "reason": "customer call"},
                }
            )
        # the rest of the stream: their new events, and a replay of their old ones
        for event in events[half:]:
            producer.send(event)
        replayed = [
            e for e in events[:half] if {e.get("customer_id"), e.get("anonymous_id")} & erased_ids
        ]
        for event in replayed:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the second half to be applied")
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_reco_events),
        120,
        "the recommender's learner to forget them",
    )
    assert worker.metric("cdpulse_erasures_total") == 4
    assert worker.metric("cdpulse_events_of_erased_total") >= len(replayed)

    # Redis: no key names them, no value holds their ids, emails or pseudonyms (the
    # ledger excepted: it keeps their pseudonyms so that they stay erased).
    client = env.redis
    ledger = f"{env.name}:erasure:ledger".encode()
    secrets = {s.encode() for s in erased_ids | emails}
    pseudonyms = {pseudonym_id(i).encode() for i in erased_ids}
    pseudonyms |= {pseudonym("email", e).encode() for e in emails}
    keys = list(client.scan_iter(match=f"{env.name}:*", count=1000))
    assert len(keys) > 100
    for key in keys:
        assert not any(s in key for s in secrets | pseudonyms), key
        if key == ledger:
            continue
        for value in _values(client, key):
            leaked = [s for s in secrets | pseudonyms if s in value]
            assert not leaked, (key, leaked[:2])
    assert len(client.hgetall(ledger)) == len(erased_ids)

    with httpx.Client(base_url=worker.url, timeout=10) as http:
        for i in erased_ids:
            assert http.get(f"/v1/profiles/{i}").status_code == 404
            assert http.get(f"/v1/profiles/{i}/export").status_code == 404
        kept = sorted(c for c in linked if c not in chosen)[0]
        assert http.get(f"/v1/profiles/{kept}").status_code == 200

    # Output topics: never their ids or emails; a compacted topic's newest record per
    # erased id is a tombstone.
    topics = Topics.from_settings(env.settings)
    for topic in (topics.dead_letter, topics.training, topics.reco_events):
        for record in consume_all(env.settings, topic, 0, timeout=10):
            assert not any(s in record.value for s in secrets | {e.encode() for e in emails})
            assert record.key is None or record.key not in secrets
    newest: dict[bytes, bytes | None] = {}
    for record in consume_all(env.settings, topics.recommendations, 1):
        newest[record.key] = record.value
    for i in erased_ids:
        assert newest.get(i.encode(), "absent") in (None, "absent"), i
    assert any(value is not None for value in newest.values())

    audit = [json.loads(r.value) for r in consume_all(env.settings, topics.audit, 4)]
    assert len(audit) == 4
    assert sorted(a["subject"] for a in audit) == sorted(pseudonym_id(c) for c in chosen)
    assert {a["requested_by"] for a in audit} == {"http", "support-desk"}
    for record in audit:
        assert record["removed"]["profile"] >= 1 and record["removed"]["alias"] >= 1
        assert record["erased_at"] and record["event_id"]
        text = json.dumps(record).encode()
        assert not any(s in text for s in secrets)
