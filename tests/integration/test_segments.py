"""Segments live on real Kafka, Redis and processes, checked against the profile oracle.

The simulated shop is sent in rounds; after each round drains, the transitions on the
segments topic must put every customer in exactly the custom segments that the oracle's
profile of the events sent so far satisfies. The conditions are re-stated here in plain
Python over the oracle's documents, apart from CEL and from the engine's field mapping.
RFM segments depend on when the sketches were rebuilt (by the learner, which also sweeps
the customers the base moved around), so for them the test checks the invariants
instead: one RFM segment per scored customer, and sizes that add up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from cdpulse.producer import Producer
from cdpulse.profile.model import decode
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop
from cdpulse.store.keys import keys_for
from cdpulse.store.segments import SegmentKeys
from tests.integration.conftest import FAST_FAILOVER, Env, drained, wait_until
from tests.oracle import expected, millis

SEGMENTS_FILE = """\
rfm: true
segments:
  - name: big_cart
    when: cart_value > 100.0
  - name: repeat_buyer
    when: orders >= 2
  - name: browser
    when: has(counts.product_viewed) && counts.product_viewed >= 40 && orders == 0
  - name: weekly_regular
    when: events_7d >= 15 || revenue_30d > 150.0
"""

Document = dict[str, Any]
CONDITIONS: dict[str, Callable[[Document], bool]] = {
    "big_cart": lambda d: d["cart"]["value"] > 100.0,
    "repeat_buyer": lambda d: d["orders"] >= 2,
    "browser": lambda d: d["counts"].get("product_viewed", 0) >= 40 and d["orders"] == 0,
    "weekly_regular": lambda d: (
        d["windows"]["7d"]["events"] >= 15 or d["windows"]["30d"]["revenue"] > 150.0
    ),
}
ROUNDS = 3


def truth(events: list[Document]) -> dict[str, set[str]]:
    """Customer -> the custom segments its oracle profile (read at its last event) is in."""
    profiles = expected(events, now=datetime.now(UTC), as_of=0).profiles
    return {
        p["customer_id"]: {name for name, holds in CONDITIONS.items() if holds(p)}
        for p in profiles.values()
        if p["customer_id"] is not None
    }


def read_topic(settings: Settings) -> list[Document]:
    """Every record of the segments topic, up to its current end."""
    import json

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(settings.topic_segments, p)
            for p in consumer.partitions_for_topic(settings.topic_segments) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[Document] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                out += [json.loads(r.value) for r in records]
        return out
    finally:
        consumer.close()


def outboxes(env: Env) -> dict[str, int]:
    """Customer -> transitions waiting in their stored profile's outbox (none: absent)."""
    found = {}
    for key in env.redis.scan_iter(match=f"{env.name}:*:profile", count=1000):
        blob = env.redis.hget(key, "b")
        if blob:
            profile = decode(blob)
            if profile.outbox:
                found[profile.id] = len(profile.outbox)
    return found


def rfm_version(env: Env) -> int:
    """The version of the newest RFM sketches the learner published."""
    return int(env.redis.hget(SegmentKeys(env.name).rfm_sketches, "version") or 0)


def same_change(a: Document, b: Document) -> bool:
    """Whether two records of one transition id say the same (the worker stamps it with
    the customer's last event, a sweep with the watermark: ``at`` may differ)."""
    return {k: v for k, v in a.items() if k != "at"} == {k: v for k, v in b.items() if k != "at"}


def published_state(transitions: list[Document]) -> dict[str, dict[str, int]]:
    """Customer -> segment -> highest generation published (odd: a member)."""
    state: dict[str, dict[str, int]] = defaultdict(dict)
    for t in transitions:
        current = state[t["customer_id"]].get(t["segment"], 0)
        state[t["customer_id"]][t["segment"]] = max(current, t["generation"])
    return state


def test_segment_transitions_follow_the_oracle_round_by_round(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=300, days=40, seed=21).events())
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(SEGMENTS_FILE, encoding="utf-8")
    roles = env.roles(
        learner=True, CDPULSE_SEGMENTS_FILE=str(definitions), CDPULSE_RFM_REFRESH_SECONDS="1"
    )
    worker, api, learner = roles.worker, roles.api, roles.learning
    cuts = [len(events) * (k + 1) // ROUNDS for k in range(ROUNDS)]
    sent = 0
    custom_seen = set()
    for cut in cuts:
        with Producer.from_settings(env.settings) as producer:
            for event in events[sent:cut]:
                producer.send(event)
        sent = cut
        wait_until(lambda: drained(env.settings), 300, f"the worker to drain {cut} events")
        want = truth(events[:cut])
        transitions = read_topic(env.settings)
        state = published_state(transitions)
        for customer, segments in want.items():
            have = {s for s, g in state.get(customer, {}).items() if g % 2 and s in CONDITIONS}
            assert have == segments, (cut, customer, have, segments)
        custom_seen |= {t["segment"] for t in transitions if t["segment"] in CONDITIONS}

    rfm_ids = {s.id for s in RFM_SEGMENTS}
    last_event: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("customer_id"):
            customer = e["customer_id"]
            last_event[customer] = max(last_event[customer], millis(e["timestamp"]))

    def swept(transitions: list[Document]) -> list[Document]:
        """RFM transitions after the customer's own last event: the learner's sweep moved
        them, because the rest of the base kept buying."""
        return [
            t
            for t in transitions
            if t["segment"] in rfm_ids and millis(t["at"]) > last_event[t["customer_id"]]
        ]

    def rfm_held(transitions: list[Document]) -> dict[str, set[str]]:
        """Per customer, the RFM segments the topic says they are in."""
        return {
            customer: {s for s, g in segments.items() if g % 2 and s in rfm_ids}
            for customer, segments in published_state(transitions).items()
        }

    # The learner rebuilds the sketches and then sweeps, one pass after the other: once
    # two more sketches were published after the stream, a whole sweep ran on final
    # summaries. Reading the transitions then shows them settled.
    version = rfm_version(env)
    wait_until(lambda: rfm_version(env) >= version + 2, 120, "two RFM rebuilds after the stream")
    transitions = read_topic(env.settings)
    assert swept(transitions), "no RFM transition came from the sweep"

    assert custom_seen == set(CONDITIONS), "every custom segment should have had members"
    left = [t for t in transitions if t["change"] == "left" and t["segment"] in CONDITIONS]
    assert left, "some customer should also have left a segment"

    # Each (customer, segment) history is generations 1, 2, 3, ... alternating, once each.
    # Outputs are published before the save that makes them so, and two processes save
    # profiles here (the worker, the learner's sweep): a save refused because the other
    # wrote the profile first is computed and published again, so an id may repeat, but
    # only as the very same change.
    first: dict[str, Document] = {}
    for t in transitions:
        if t["transition_id"] in first:
            assert same_change(t, first[t["transition_id"]]), (t, first[t["transition_id"]])
        first.setdefault(t["transition_id"], t)
    history: dict[tuple[str, str], list[Document]] = defaultdict(list)
    for t in first.values():
        history[(t["customer_id"], t["segment"])].append(t)
    for steps in history.values():
        steps.sort(key=lambda t: t["generation"])
        assert [t["generation"] for t in steps] == list(range(1, len(steps) + 1))
        assert all((t["change"] == "entered") == (t["generation"] % 2 == 1) for t in steps)

    # RFM: every customer holds at most one RFM segment, and some hold one; and the topic
    # tells what the member lists hold.
    held = rfm_held(transitions)
    doubled = {c: h for c, h in held.items() if len(h) > 1}
    assert not doubled, f"the topic puts {len(doubled)} customers in two RFM segments: {doubled}"
    assert any(held.values())
    for segment in rfm_ids:
        stored = {
            member
            for shard in keys_for(env.redis, env.name).shards()
            for member in env.redis.zrange(shard.members(segment), 0, -1)
        }
        told = {c.encode() for c, h in held.items() if segment in h}
        assert stored == told, (segment, stored - told, told - stored)

    # The sweep empties the outboxes it published (a worker's save empties one too): no
    # profile keeps carrying transitions once the sweeps find nothing more to move.
    wait_until(lambda: not outboxes(env), 60, "every profile to have an empty outbox")

    final = truth(events)
    sizes = {n: sum(n in s for s in final.values()) for n in CONDITIONS}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        listed = {s["name"]: s for s in http.get("/v1/segments").json()["segments"]}
        assert {n: listed[n]["size"] for n in CONDITIONS} == sizes
        assert sum(listed[s]["size"] for s in rfm_ids) == sum(len(h) for h in held.values())
        members: list[str] = []
        after = ""
        while True:
            page = http.get(
                "/v1/segments/repeat_buyer/members", params={"after": after, "limit": 7}
            ).json()
            members += page["members"]
            if page["next"] is None:
                break
            after = page["next"]
        assert members == sorted(c for c, s in final.items() if "repeat_buyer" in s)
        assert http.get("/v1/segments/nope/members").status_code == 404
        assert http.get("/v1/segments/big_cart/members?limit=0").status_code == 400

    # The size gauges are the api's (it reads the member lists); the sketches the learner's.
    for name, size in sizes.items():
        wait_until(
            lambda n=name, s=size: api.metric("cdpulse_segment_size", {"segment": n}) == s,
            30,
            f"the size gauge of {name} to read {size}",
        )
    assert learner.metric("cdpulse_rfm_customers") > 0
    entered = sum(t["change"] == "entered" for t in first.values() if t["segment"] in CONDITIONS)
    assert worker.metric("cdpulse_segment_transitions_total", {"change": "entered"}) >= entered


@pytest.mark.parametrize("role", ["worker", "learner", "api"])
def test_a_bad_definition_stops_every_role_with_the_line(
    env: Env, tmp_path: Path, role: str
) -> None:
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(SEGMENTS_FILE + "  - name: vip\n    when: revenu_30d > 1.0\n")
    variables = {**env.variables, "CDPULSE_SEGMENTS_FILE": str(definitions)}
    done = subprocess.run(
        [sys.executable, "-m", "cdpulse", role],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{definitions}:12: segment 'vip'" in done.stderr
    assert "did you mean 'revenue_30d'" in done.stderr


def test_a_killed_worker_loses_no_transition_and_repeats_only_same_ids(
    env: Env, tmp_path: Path
) -> None:
    events = list(Shop(customers=150, days=20, seed=3).events())
    half = len(events) // 2
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(SEGMENTS_FILE, encoding="utf-8")
    variables = {"CDPULSE_SEGMENTS_FILE": str(definitions), "CDPULSE_RFM_REFRESH_SECONDS": "1"}
    # The learner rebuilds the RFM sketches and sweeps, across the kill.
    env.learner(**variables)
    # Offsets are committed every 10 minutes here: the kill loses every commit, and the
    # next worker is handed the first half again.
    first = env.worker(CDPULSE_COMMIT_INTERVAL="600", **FAST_FAILOVER, **variables)
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            producer.send(event)
    wait_until(
        lambda: first.metric("cdpulse_events_applied_total") >= half * 0.9,
        300,
        "the first worker to apply most of the first half",
    )
    first.kill()
    second = env.worker(**FAST_FAILOVER, **variables)
    with Producer.from_settings(env.settings) as producer:
        for event in events[half:]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the second worker to drain its topics")

    transitions = read_topic(env.settings)
    by_id: dict[str, Document] = {}
    for t in transitions:
        if t["transition_id"] in by_id:  # published again: the very same change
            assert same_change(t, by_id[t["transition_id"]]), (t, by_id[t["transition_id"]])
        by_id[t["transition_id"]] = t
    state = published_state(list(by_id.values()))
    for customer, segments in truth(events).items():
        have = {s for s, g in state.get(customer, {}).items() if g % 2 and s in CONDITIONS}
        assert have == segments, (customer, have, segments)
    history: dict[tuple[str, str], list[int]] = defaultdict(list)
    for t in by_id.values():
        history[(t["customer_id"], t["segment"])].append(t["generation"])
    for generations in history.values():
        assert sorted(generations) == list(range(1, len(generations) + 1))
    assert second.metric("cdpulse_duplicates_total") > 0, "no re-delivery happened"
