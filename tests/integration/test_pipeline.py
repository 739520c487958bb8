"""The whole pipeline against real Kafka, Redis, worker and api processes, checked by the
oracle: the workers make the profiles, the api collects events and serves the profiles."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdpulse.connections import async_redis
from cdpulse.contract.topics import Topics
from cdpulse.producer import Producer
from cdpulse.simulate.malformed import malformed_event
from cdpulse.simulate.shop import Shop
from cdpulse.store.keys import keys_for
from tests.integration.conftest import (
    FAST_FAILOVER,
    Env,
    Worker,
    consume_all,
    drained,
    wait_until,
)
from tests.oracle import differences, expected


def _send_stream(env: Env, stream: list[tuple[dict[str, Any], bytes | None]]) -> int:
    """Send (event, malformed bytes or None) in order; returns messages sent."""
    topics = Topics.from_settings(env.settings)
    with Producer.from_settings(env.settings) as producer:
        for event, broken in stream:
            if broken is None:
                producer.send(event)
            else:
                key = (event.get("customer_id") or event.get("anonymous_id") or "").encode()
                producer.send_raw(topics.for_type(event["type"]), broken, key)
    return len(stream)


def expected_profiles(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return expected(events, now=datetime.now(UTC)).profiles


def assert_profile_matches(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    problems = differences(actual, wanted)
    assert not problems, "profile differs from the oracle:\n  " + "\n  ".join(problems)


def _check_profiles(api: Worker, env: Env, events: list[dict[str, Any]]) -> None:
    """Redis holds exactly the oracle's profiles, and the api serves each as the oracle's."""
    expected = expected_profiles(events)
    keys = keys_for(env.redis, env.name)
    stored = {
        keys.id_in(key.decode(), "profile")
        for key in env.redis.scan_iter(match=keys.ids_pattern("profile"), count=1000)
    }
    assert stored == set(expected), (
        f"{len(stored - set(expected))} unexpected profiles "
        f"(e.g. {sorted(stored - set(expected))[:3]}), "
        f"{len(set(expected) - stored)} missing (e.g. {sorted(set(expected) - stored)[:3]})"
    )
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for profile_id, want in expected.items():
            response = http.get(f"/v1/profiles/{profile_id}")
            assert response.status_code == 200, (profile_id, response.text)
            assert_profile_matches(response.json(), want)


def test_simulated_shop_gives_exact_profiles_and_every_message_is_accounted_for(
    env: Env,
) -> None:
    rng = random.Random(5)
    events = list(Shop(customers=650, days=30, seed=11).events())
    known = {e["customer_id"] for e in events if e.get("customer_id")}
    assert len(events) >= 20_000 and len(known) >= 500

    stream: list[tuple[dict[str, Any], bytes | None]] = []
    expected_reasons: Counter[str] = Counter()
    bad_at = set(rng.sample(range(len(events)), 500))
    dupes_at = set(rng.sample(range(len(events)), 300))
    for i, event in enumerate(events):
        stream.append((event, None))
        if i in bad_at:
            raw, reason = malformed_event(rng, event)
            stream.append((event, raw))
            expected_reasons[reason] += 1
        if i in dupes_at:
            stream.append((event, None))  # a client retry: same event_id, sent again

    worker = env.worker()
    api = env.api()
    sent = _send_stream(env, stream)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")

    letters = [
        json.loads(r.value) for r in consume_all(env.settings, env.settings.topic_dead_letter, 500)
    ]
    assert len(letters) == 500
    assert Counter(letter["reason"] for letter in letters) == expected_reasons
    for letter in letters:
        assert letter["topic"] in Topics.from_settings(env.settings).inputs
        assert letter["offset"] >= 0 and letter["detail"] and letter["raw_bytes"] > 0

    processed = worker.metric("cdpulse_events_consumed_total")
    rejected = worker.metric("cdpulse_events_rejected_total")
    assert processed + rejected == sent
    assert worker.metric("cdpulse_duplicates_total") == 300
    assert worker.metric("cdpulse_profile_merges_total") > 0
    _check_profiles(api, env, events)


def test_a_killed_worker_redelivers_and_nothing_is_counted_twice(env: Env) -> None:
    events = list(Shop(customers=150, days=20, seed=3).events())
    half = len(events) // 2
    # Offsets are committed every 10 minutes here, so the kill loses every commit and
    # the next worker is handed the first half again.
    first = env.worker(CDPULSE_COMMIT_INTERVAL="600", **FAST_FAILOVER)
    _send_stream(env, [(e, None) for e in events[:half]])
    wait_until(
        lambda: (
            first.metric("cdpulse_events_applied_total") + first.metric("cdpulse_duplicates_total")
            >= half
        ),
        300,
        "the first worker to apply the first half",
    )
    first.kill()

    second = env.worker(**FAST_FAILOVER)
    _send_stream(env, [(e, None) for e in events[half:]])
    wait_until(lambda: drained(env.settings), 300, "the second worker to drain its topics")
    assert second.metric("cdpulse_duplicates_total") >= half * 0.9, "no re-delivery happened"
    _check_profiles(env.api(), env, events)


def test_collector_and_profile_endpoint_over_http(env: Env) -> None:
    env.worker()
    api = env.api()
    events = [e for e in Shop(customers=5, days=3, seed=9).events()]
    customer = next(e["customer_id"] for e in events if e.get("customer_id"))
    mine = [e for e in events if e.get("customer_id") == customer]

    with httpx.Client(base_url=api.url, timeout=30) as http:
        assert http.get(f"/v1/profiles/{customer}").status_code == 404

        one = http.post("/v1/events", json=mine[0])
        assert one.status_code == 200 and one.json()["accepted"] == 1
        rest = http.post("/v1/events", json=[*mine[1:], {"event_id": "x", "type": "nope"}])
        assert rest.status_code == 207
        body = rest.json()
        assert body["accepted"] == len(mine) - 1 and body["rejected"] == 1
        assert body["results"][-1]["reason"] == "unknown_type"

        bad = http.post("/v1/events", content=b"{not json")
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        huge = http.post("/v1/events", content=b"[" + b" " * (2 * 1024 * 1024) + b"]")
        assert huge.status_code == 413
        none = http.post("/v1/events", json={"event_id": "y", "type": "order_completed"})
        assert none.status_code == 422

        wait_until(
            lambda: (
                http.get(f"/v1/profiles/{customer}").status_code == 200
                and http.get(f"/v1/profiles/{customer}").json()["events"] == len(mine)
            ),
            60,
            "the posted events to reach the profile",
        )
        assert_profile_matches(
            http.get(f"/v1/profiles/{customer}").json(), expected_profiles(mine)[customer]
        )

    letters = consume_all(env.settings, env.settings.topic_dead_letter, 2)
    assert sorted(json.loads(r.value)["reason"] for r in letters) == [
        "invalid_field",
        "unknown_type",
    ]


def _event(n: int, kind: str, **ids: str) -> dict[str, Any]:
    """A test event ``n`` seconds after 2026-01-01."""
    return {
        "event_id": f"e{n}",
        "type": kind,
        "timestamp": 1_767_225_600_000 + n * 1000,
        "channel": "web",
        "properties": {"url": "/"} if kind == "page_viewed" else {},
        **ids,
    }


class _Racing:
    """A worker's state store whose first write waits for ``before`` (another worker
    writing, say) to run first, once."""

    def __init__(self, state: Any, before: Callable[[], Awaitable[Any]]) -> None:
        self.state, self.before, self.raced = state, before, False

    async def read(self, wanted: Any) -> Any:
        return await self.state.read(wanted)

    def stage(self, changes: Any) -> None:
        self.state.stage(changes)

    def discard(self) -> None:
        self.state.discard()

    async def write(self, changes: Any) -> Any:
        if not self.raced:
            self.raced = True
            await self.before()
        return await self.state.write(changes)


def test_a_visitor_written_while_its_customer_merges_it_loses_nothing(env: Env) -> None:
    """Two workers: one applies a visitor's event while the other's batch, which read the
    visitor before, links it to its customer and merges it. The event must reach the
    customer, not vanish with the visitor's profile (the chaos rebalance test found it)."""
    import asyncio

    from cdpulse.contract.message import Message
    from cdpulse.pipeline.batch import ProfilePipeline
    from cdpulse.pipeline.memory import MemoryOutlet
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.pipeline.state import Wanted
    from cdpulse.store.state import RedisState
    from tests.unit.test_pipeline import RULES, encode

    visited = [
        _event(0, "page_viewed", anonymous_id="A"),
        _event(2, "page_viewed", anonymous_id="A"),
    ]
    identify = _event(1, "identify", anonymous_id="A", customer_id="C")
    clicks = [Message("clicks", 0, i, b"A", encode(e)) for i, e in enumerate(visited)]
    login = Message("customers", 0, 0, b"C", encode(identify))

    async def main() -> None:
        client = async_redis(env.settings.redis_url)
        state = RedisState(
            client, env.name, pseudonym=RULES.traits.pseudonymizer.of_id, shard_of=lambda _: 0
        )

        def worker(store: Any) -> ProfilePipeline:
            return ProfilePipeline(
                store, MemoryOutlet(), Stages(Engine(RULES, Models())), partitions=2
            )

        other = worker(state)

        try:
            await other.run([clicks[0]])
            await worker(_Racing(state, lambda: other.run([clicks[1]]))).run([login])
            view = await state.read(Wanted(ids={"A", "C"}))
            assert view.aliases == {"A": "C"}
            assert view.profiles["A"].profile is None, "the visitor's own profile is retired"
            customer = view.profiles["C"].profile
            assert customer is not None
            assert customer.events == 3, f"{customer.events} of the 3 events reached C"
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_refused_save_decided_again_ignores_what_a_later_batch_staged(env: Env) -> None:
    """Batch 1 applies a visitor's events; batch 2, begun while batch 1 is written, merges
    that visitor into its customer, starting from batch 1's staged visitor. Batch 1's
    save of the visitor is refused (another worker wrote the visitor meanwhile), so batch
    1 decides it again: from what is written, not from batch 2's staged customer, where
    the visitor's events already look applied (they came with the merge) and would be
    skipped, and then lost with batch 2's refused merge. (The broker-kill chaos test
    lost one event this way, ~1 run in 20; the fuzzing harness with a small profile cache
    lost them in 2 seeds of 5.)"""
    import asyncio

    from cdpulse.contract.message import Message
    from cdpulse.pipeline.batch import ProfilePipeline
    from cdpulse.pipeline.memory import MemoryOutlet
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.pipeline.state import Wanted
    from cdpulse.store.cache import ProfileCache
    from cdpulse.store.state import RedisState
    from tests.unit.test_pipeline import RULES, encode

    def click(offset: int, n: int) -> Message:
        return Message(
            "clicks", 0, offset, b"V", encode(_event(n, "page_viewed", anonymous_id="V"))
        )

    login = _event(3, "identify", anonymous_id="V", customer_id="C")
    first = [click(0, 0), click(1, 1)]
    second = [Message("clicks", 0, 2, b"V", encode(login)), click(3, 4)]
    elsewhere = Message("clicks", 1, 0, b"V", encode(_event(2, "page_viewed", anonymous_id="V")))

    async def main() -> None:
        client = async_redis(env.settings.redis_url)
        pseudonym = RULES.traits.pseudonymizer.of_id
        state = RedisState(
            client, env.name, pseudonym=pseudonym, shard_of=lambda _: 0, cache=ProfileCache(100)
        )

        def worker(store: Any) -> ProfilePipeline:
            return ProfilePipeline(
                store, MemoryOutlet(), Stages(Engine(RULES, Models())), partitions=2
            )

        # Another worker (its own store, no cache), e.g. the partition's owner before a
        # rebalance.
        other = worker(RedisState(client, env.name, pseudonym=pseudonym, shard_of=lambda _: 0))
        gate = asyncio.Event()

        async def other_first() -> None:
            """Batch 1's write waits until batch 2 is begun; then the other worker
            writes the visitor first."""
            await gate.wait()
            await other.run([elsewhere])

        try:
            pipeline = worker(_Racing(state, other_first))
            flight = asyncio.ensure_future(pipeline.finish(await pipeline.begin(first)))
            begun = await pipeline.begin(second, previous=flight)
            gate.set()
            report = await flight
            assert report.retries["conflict"] == 1, "batch 1's save of the visitor was refused"
            await pipeline.finish(begun)
            view = await state.read(Wanted(ids={"V", "C"}))
            assert view.aliases == {"V": "C"}
            customer = view.profiles["C"].profile
            assert customer is not None
            assert customer.events == 5, f"{customer.events} of the 5 events reached C"
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("seed", [2, 7])  # each lost events before 2d879cf
def test_overlapping_batches_with_a_small_cache_and_a_flaky_broker_match_the_oracle(
    env: Env, seed: int, tmp_path: Path
) -> None:
    """The worker's shape on a real Redis: each batch begun while the one before it is
    written, its publish failing now and then (the broker down: the finish is retried
    from scratch), a profile cache far smaller than the shop (staged saves evicted,
    profiles read again), due schedules polled, triggers decided and idle batches
    between; the profiles still equal the oracle's."""
    import asyncio

    import yaml

    from cdpulse.models.churn.labels import ChurnLabeler
    from cdpulse.pipeline.batch import ProfilePipeline, Sharding
    from cdpulse.pipeline.memory import MemoryOutlet
    from cdpulse.pipeline.outputs import Outputs
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.pipeline.state import Wanted
    from cdpulse.profile.view import render
    from cdpulse.settings import Settings
    from cdpulse.store.cache import ProfileCache
    from cdpulse.store.state import RedisState
    from cdpulse.triggers.rules import load_rules
    from tests import oracle, trigger_oracle
    from tests.unit.test_pipeline import (
        BOOK,
        PARTITIONS,
        RULES,
        arrival_order,
        cut,
        with_duplicates_and_garbage,
    )

    rng = random.Random(seed)
    events = list(Shop(customers=100, days=30, seed=seed).events())
    records, _ = with_duplicates_and_garbage(events, rng, duplicates=0.03, malformed=0.0)
    batches = cut(arrival_order(records, rng), rng, max_batch=rng.choice((40, 150, 500)))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(trigger_oracle.RULES), encoding="utf-8")

    class FlakyBroker(MemoryOutlet):
        failed = 0

        async def publish(self, outputs: Outputs) -> None:
            await asyncio.sleep(0)  # the other batch's work goes on meanwhile
            if rng.random() < 0.2:
                self.failed += 1
                raise ConnectionError("broker down (test)")
            await super().publish(outputs)

    async def retried(call: Any) -> Any:
        while True:
            try:
                return await call()
            except ConnectionError:
                await asyncio.sleep(0)

    async def main() -> tuple[list[str], int]:
        client = async_redis(env.settings.redis_url)
        state = RedisState(
            client,
            f"{env.name}-{seed}",
            pseudonym=RULES.traits.pseudonymizer.of_id,
            shard_of=lambda _: 0,
            cache=ProfileCache(30),
        )
        engine = Engine(
            RULES,
            Models(),
            book=BOOK,
            labeler=ChurnLabeler.from_settings(Settings(pseudonym_key="k" * 32)),
            triggers=load_rules(str(rules)),
            trigger_lateness=60_000,
        )
        outlet = FlakyBroker()
        pipeline = ProfilePipeline(
            state,
            outlet,
            Stages(engine),
            partitions=3 * PARTITIONS,
            sharding=Sharding(owned=lambda: (0,), shard_of=lambda _: 0),
        )
        flights: list[asyncio.Future[Any]] = []

        async def finish(begun: Any, previous: asyncio.Future[Any] | None) -> Any:
            if previous is not None:
                await previous
            return await retried(lambda: pipeline.finish(begun))

        try:
            for batch in batches:
                if rng.random() < 0.1:  # the stream idles: an empty batch decides what is due
                    while flights:
                        await flights.pop(0)
                    await retried(lambda: pipeline.run([]))
                while len(flights) > 1:
                    await flights.pop(0)
                previous = flights[-1] if flights else None
                begun = await retried(lambda b=batch, p=previous: pipeline.begin(b, previous=p))
                flights.append(asyncio.ensure_future(finish(begun, previous)))
            for flight in flights:
                await flight
            truth = oracle.expected([m.value for b in batches for m in b], now=datetime.now(UTC))
            view = await state.read(Wanted(ids=set(truth.profiles) | set(truth.aliases)))
            problems = []
            for profile_id, want in sorted(truth.profiles.items()):
                stored = view.profiles.get(profile_id)
                if stored is None or stored.profile is None:
                    problems.append(f"{profile_id}: missing")
                    continue
                problems += differences(render(stored.profile, truth.as_of, RULES), want)
            for visitor, customer in truth.aliases.items():
                if view.aliases.get(visitor) != customer:
                    problems.append(f"{visitor}: linked to {view.aliases.get(visitor)}")
            return problems, outlet.failed
        finally:
            await client.aclose()

    problems, failed = asyncio.run(main())
    assert failed > 0, "the broker never failed: the retried finish went untested"
    assert problems == [], f"{len(problems)} differences from the oracle: {problems[:5]}"
