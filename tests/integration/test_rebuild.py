"""``cdpulse rebuild`` against a live worker's result: the same store, key by key."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import redis
from kafka import KafkaAdminClient, TopicPartition

from cdpulse.contract.topics import Topics
from cdpulse.producer import Producer
from cdpulse.simulate.malformed import malformed_event
from cdpulse.simulate.shop import Shop
from cdpulse.store.keys import Keys
from tests.chaos.state import assert_exact, oracle_problems, read_state, summary
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.oracle import expected, pseudonym_id
from tests.oracle import millis as oracle_millis


def cdpulse(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdpulse", *args],
        env={**os.environ, **env.variables},
        capture_output=True,
        text=True,
        timeout=600,
    )


def linked_visitors(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """customer -> the anonymous ids its identify events link."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "identify" and e.get("anonymous_id"):
            out[e["customer_id"]].add(e["anonymous_id"])
    return out


def test_rebuild_from_kafka_gives_the_live_profiles_key_by_key(env: Env) -> None:
    rng = random.Random(21)
    events = list(Shop(customers=300, days=20, seed=21).events())
    topics = Topics.from_settings(env.settings)
    raw: list[bytes] = []
    bad = 0
    # Started first, so that it streams rather than catches up on a backlog: see
    # tests/chaos/test_backlog.py for what a backlog does to the live sessions.
    worker = env.worker()
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
            raw.append(json.dumps(event).encode())
            if rng.random() < 0.01:  # a broken copy: dead-lettered live and in the rebuild
                broken, _ = malformed_event(rng, event)
                key = (event.get("customer_id") or event["anonymous_id"]).encode()
                producer.send_raw(topics.for_type(event["type"]), broken, key)
                raw.append(broken)
                bad += 1
            if rng.random() < 0.01:  # a client retry: the same event_id again
                producer.send(event)
                raw.append(json.dumps(event).encode())
        # The future-skew check judges an event time against the message's Kafka timestamp,
        # so both decide alike: 10 minutes after it is refused, 1 minute is not, though the
        # event is months before the wall clock of either.
        viewed = next(e for e in events[len(events) // 2 :] if e["type"] == "product_viewed")
        at = oracle_millis(viewed["timestamp"])
        for visitor, before in (("V-skew-late", 600_000), ("V-skew-close", 60_000)):
            planted = {**viewed, "event_id": visitor, "anonymous_id": visitor}
            planted.pop("customer_id", None)
            value = json.dumps(planted).encode()
            producer.kafka.send(
                topics.for_type("product_viewed"),
                value=value,
                key=visitor.encode(),
                timestamp_ms=at - before,
            )
            raw.append(value)
        refused = raw[-2]  # the oracle judges skew by the wall clock: it is not given this one
        bad += 1

    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    worker.stop()  # the live store stays as it is while it is compared

    target = f"{env.name}-rebuilt"
    done = cdpulse(env, "rebuild", "--target-prefix", target)
    assert done.returncode == 0, done.stderr
    assert f"from {len(raw)} messages in 12 partitions" in done.stdout, done.stdout
    assert f"{bad} dead letters" in done.stdout, done.stdout
    letters = [json.loads(r.value) for r in consume_all(env.settings, topics.dead_letter, bad)]
    assert len(letters) == bad
    [late] = [letter for letter in letters if letter["key"] == "V-skew-late"]
    assert late["reason"] == "future_timestamp"
    assert "600s ahead of its Kafka timestamp" in late["detail"]
    again = cdpulse(env, "rebuild", "--target-prefix", target)
    assert again.returncode == 2
    assert "already holds keys" in again.stderr and "--target-prefix" in again.stderr

    live, rebuilt = read_state(env.redis, env.name), read_state(env.redis, target)
    assert set(rebuilt.profiles) == set(live.profiles)
    assert "V-skew-close" in live.profiles and "V-skew-late" not in live.profiles
    assert rebuilt.aliases == live.aliases
    assert rebuilt.watermarks == live.watermarks
    truth = expected([r for r in raw if r != refused], now=datetime.now(UTC))
    problems = oracle_problems(rebuilt, truth)
    assert not problems, f"the rebuilt store differs from the oracle:\n  {summary(problems)}"
    live_documents, rebuilt_documents = live.documents(), rebuilt.documents()
    different = [i for i in live_documents if rebuilt_documents[i] != live_documents[i]]
    if different:
        # The rebuild is exact, so the live store is not: say how it differs from the truth.
        assert_exact(env.redis, env.name, truth)
    assert not different, (
        f"{len(different)} rebuilt profiles differ from the live ones, e.g. {different[0]}:\n"
        f"live    {live_documents[different[0]]}\nrebuilt {rebuilt_documents[different[0]]}"
    )


def test_a_rebuild_into_an_empty_redis_keeps_erased_customers_erased(env: Env) -> None:
    """The erasure ledger comes back from its topic: a customer erased live stays erased in
    a rebuild into a Redis that never held the ledger, though retention took the request
    from the customers topic while their other events are still retained."""
    events = list(Shop(customers=80, days=10, seed=11).events())
    linked = linked_visitors(events)
    buyers = {e["customer_id"] for e in events if e["type"] == "order_completed"}
    erased_customer = sorted(c for c in linked if c in buyers)[0]
    erased = {erased_customer, *linked[erased_customer]}
    topics = Topics.from_settings(env.settings)
    request = {
        "event_id": "erase-1",
        "type": "erasure_requested",
        "timestamp": events[-1]["timestamp"],
        "customer_id": erased_customer,
        "channel": "call_center",
        "properties": {"requested_by": "support-desk"},
    }
    # After the erasure: their old events replayed, as a returning device would send.
    again = [e for e in events if {e.get("customer_id"), e.get("anonymous_id")} & erased]
    worker = env.worker()
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the events to be applied")
    with Producer.from_settings(env.settings) as producer:
        producer.send(request)
    wait_until(lambda: drained(env.settings), 120, "the erasure to be carried out")
    with Producer.from_settings(env.settings) as producer:
        for event in again:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 120, "the replayed events to be dropped")
    assert worker.metric("cdpulse_erasures_total") == 1
    worker.stop()

    # The ledger's topic names the erased by pseudonym only.
    ledger = consume_all(env.settings, topics.erasures, len(erased))
    assert {r.key for r in ledger} == {pseudonym_id(i).encode() for i in erased}
    for record in ledger:
        assert not any(i.encode() in record.value for i in erased)
        assert json.loads(record.value)["version"] == 1

    # Retention takes the request (and what came before it on its partition).
    [found] = [
        r
        for r in consume_all(env.settings, topics.customers, 1)
        if json.loads(r.value)["event_id"] == request["event_id"]
    ]
    removed = Counter(
        json.loads(r.value)["event_id"]
        for r in consume_all(env.settings, topics.customers, 1)
        if r.partition == found.partition and r.offset <= found.offset
    )
    admin = KafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(topics.customers, found.partition): found.offset + 1})
    finally:
        admin.close()
    assert removed.pop(request["event_id"]) == 1 and removed
    # What the rebuild reads, in the order it was sent, without what retention took (the
    # copies sent first: the partition keeps the order they were sent in).
    history = []
    for event in [*events, *again]:
        if removed[event["event_id"]] > 0 and topics.for_type(event["type"]) == topics.customers:
            removed[event["event_id"]] -= 1
            continue
        history.append(json.dumps(event).encode())
    assert not +removed, f"records removed but never sent: {+removed}"

    # A Redis that never held the ledger: another database, where nothing of this test is.
    fresh_url = env.settings.redis_url.rsplit("/", 1)[0] + "/7"
    fresh = redis.Redis.from_url(fresh_url)
    try:
        assert not list(fresh.scan_iter(match=f"{env.name}:*", count=1000))
        done = cdpulse(env, "rebuild", "--redis-url", fresh_url)
        assert done.returncode == 0, done.stderr
        assert f"erasure ledger: {len(erased)} erased ids loaded" in done.stdout, done.stdout
        rebuilt = read_state(fresh, env.name)
        assert not erased & set(rebuilt.profiles), "an erased customer came back"
        assert not erased & (set(rebuilt.aliases) | set(rebuilt.aliases.values()))
        assert set(fresh.hgetall(Keys(env.name).erasure_ledger)) == {
            pseudonym_id(i).encode() for i in erased
        }
        # Everyone else exactly as the oracle computes them from the same history, where
        # the erasure is known from the ledger only.
        forgotten = [
            {
                **request,
                "event_id": f"ledger-{n}",
                "customer_id": i,
                "timestamp": events[0]["timestamp"],
            }
            for n, i in enumerate(sorted(erased))
        ]
        truth = expected([*history, *forgotten], now=datetime.now(UTC))
        assert len(truth.profiles) > 50
        problems = oracle_problems(rebuilt, truth)
        assert not problems, f"the rebuilt store differs from the oracle:\n  {summary(problems)}"
    finally:
        stale = list(fresh.scan_iter(match=f"{env.name}:*", count=1000))
        if stale:
            fresh.delete(*stale)
        fresh.close()
