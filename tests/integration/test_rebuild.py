"""``cdpulse rebuild`` against a live worker's result: the same store, key by key."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime

from cdpulse.contract.topics import Topics
from cdpulse.producer import Producer
from cdpulse.simulate.malformed import malformed_event
from cdpulse.simulate.shop import Shop
from tests.chaos.state import assert_exact, oracle_problems, read_state, summary
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.oracle import expected
from tests.oracle import millis as oracle_millis


def cdpulse(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdpulse", *args],
        env={**os.environ, **env.variables},
        capture_output=True,
        text=True,
        timeout=600,
    )


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
