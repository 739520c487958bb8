"""The Redis state store against the in-memory one: the same batches, the same state.

The pipeline runs a simulated shop (with duplicates, garbage and a crash-like refetch)
once over ``MemoryState`` and once over ``RedisState`` on the session's real Redis; every
profile, link, schedule, segment member list, summary and identity entry must end up the
same, and a typical batch must make two round trips. Then the compare-and-set's refusals,
each provoked by a real concurrent write.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from cdpulse.connections import BlockingRedis, async_redis
from cdpulse.contract.message import Message
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Wanted
from cdpulse.profile.model import Profile, decode
from cdpulse.segments.definitions import parse
from cdpulse.simulate import Shop
from cdpulse.store.cache import ProfileCache
from cdpulse.store.erasure import Eraser
from cdpulse.store.keys import Keys, keys_for
from cdpulse.store.kpis import kpi_key
from cdpulse.store.ledger import RedisLedger
from cdpulse.store.state import RedisState
from tests.integration.conftest import Env
from tests.oracle import millis
from tests.unit.test_pipeline import (
    RULES,
    arrival_order,
    cut,
    encode,
    in_order,
    partition_of,
    with_duplicates_and_garbage,
)

BOOK = parse(
    """
rfm: false
segments:
  - name: buyer
    when: orders >= 1
  - name: browser
    when: events >= 5 && orders == 0
"""
)


def engine() -> Engine:
    return Engine(RULES, Models(), book=BOOK)


@pytest.fixture
def redis_state(env: Env) -> Iterator[RedisState]:
    client = async_redis(env.settings.redis_url)
    yield RedisState(
        client,
        env.name,
        pseudonym=RULES.traits.pseudonymizer.of_id,
        shard_of=partition_of,
    )


def run_batches(pipeline: ProfilePipeline, batches: list[list[Message]]) -> None:
    async def main() -> None:
        for batch in batches:
            await pipeline.run(batch)

    asyncio.run(main())


def redis_contents(client: BlockingRedis, prefix: str) -> dict[str, object]:
    """Every key under ``prefix`` and its value, profiles decoded. A Redis Cluster's
    profile counts are left out where they went back to 0 (their shard's profiles
    retired), and its shards' KPI counters are summed under one Redis's names."""
    keys = keys_for(client, prefix)
    counts = {shard.profile_count for shard in keys.shards()} if keys.cluster else set()
    out: dict[str, object] = {}
    for raw in client.scan_iter(f"{prefix}:*"):
        key = raw.decode()
        kind = client.type(raw).decode()
        if key in counts and client.get(raw) == b"0":
            continue
        if keys.cluster and key.endswith(":identities"):
            # A Redis Cluster's previous owner keeps a pseudonym another customer took in
            # its index (README: erasure checks each entry's owner): one Redis's is exact.
            continue
        if kind == "hash" and keys.cluster and "}:kpis:" in key:
            summed = out.setdefault(kpi_key(prefix, keys.after_shard(key)[5:]), {})
            assert isinstance(summed, dict)
            for field, n in client.hgetall(raw).items():
                summed[field.decode()] = str(int(summed.get(field.decode(), 0)) + int(n)).encode()
        elif kind == "hash":
            value = {k.decode(): v for k, v in client.hgetall(raw).items()}
            if key.endswith(":profile"):
                value = (int(value["v"]), decode(value["b"]))
            out[key] = value
        elif kind == "zset":
            out[key] = {m.decode(): s for m, s in client.zrange(raw, 0, -1, withscores=True)}
        elif kind == "string":
            out[key] = client.get(raw)
    return out


def memory_contents(state: MemoryState, keys: Keys) -> dict[str, object]:
    """The same view of a ``MemoryState``, under the Redis key names of ``keys``."""
    out: dict[str, object] = {}
    for profile_id, (version, blob) in state.blobs.items():
        out[keys.profile(profile_id)] = (version, decode(blob))
    for visitor, customer in state.aliases.items():
        out[keys.alias(visitor)] = customer.encode()
    for merged, survivor in state.merged_into.items():
        out[keys.merged_into(merged)] = survivor.encode()
    out[keys.watermark] = {n: str(at).encode() for n, at in state.watermarks.items()}
    shared: dict[str, dict[str, object]] = defaultdict(dict)  # a shard's, as in Redis
    for kind, schedule in (("churn", state.churn_due), ("trigger", state.trigger_due)):
        for partition, dues in schedule.items():
            for i, at in dues.items():
                shared[keys.shard(i).due(partition, kind)][i] = float(at)
    for segment, members in state.members.items():
        for i in members:
            shared[keys.shard(i).members(segment)][i] = 0.0
    for i, summary in state.summaries.items():
        shared[keys.shard(i).clv_summaries][i] = summary
    out.update(shared)
    for pseudonym, customer in state.identities.items():
        out[keys.identity(pseudonym)] = customer.encode()
        if not keys.cluster:  # and each customer's own index of them (digits -> "")
            index = out.setdefault(keys.identities(customer), {})
            assert isinstance(index, dict)
            index[pseudonym.removeprefix("hmac:")] = b""
    for period, counts in state.kpis.items():
        out[kpi_key(keys.prefix, period)] = {f: str(n).encode() for f, n in counts.items()}
    if keys.cluster:
        for shard, n in Counter(keys.shard(i) for i in state.blobs).items():
            out[shard.profile_count] = str(n).encode()
    else:
        out[keys.shards()[0].profile_count] = str(len(state.blobs)).encode()
    return out


def test_a_shop_leaves_redis_exactly_as_the_memory_store(env: Env, redis_state: RedisState) -> None:
    rng = random.Random(11)
    events = list(Shop(customers=40, days=10, seed=11).events())
    records, _ = with_duplicates_and_garbage(events, rng, duplicates=0.03, malformed=0.01)
    stream = arrival_order(records, rng)
    batches = cut(stream, rng, max_batch=120)

    memory = MemoryState(shard_of=partition_of)
    run_batches(ProfilePipeline(memory, MemoryOutlet(), Stages(engine()), partitions=12), batches)
    in_redis = ProfilePipeline(redis_state, MemoryOutlet(), Stages(engine()), partitions=12)
    before = redis_state.round_trips
    run_batches(in_redis, batches)

    assert memory.aliases, "no visitor was linked: the stitching path went untested"
    assert memory.members, "no segment member: the member lists went untested"
    got = redis_contents(env.redis, env.name)
    want = memory_contents(memory, keys_for(env.redis, env.name))
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    # every batch: one read and one write, and now and then a hop through a link; on a
    # Redis Cluster a write that links or merges takes up to three (store/links.py)
    per_batch = 4 if redis_state.keys.cluster else 2
    assert redis_state.round_trips - before <= per_batch * len(batches) + 10


def test_admin_merges_leave_redis_exactly_as_the_memory_store(
    env: Env, redis_state: RedisState
) -> None:
    # A shop, then admin merges among its customers in any shape (chains, cycles,
    # repeats), then an event of every id: links, markers, member lists, schedules and
    # summaries in Redis end exactly as the in-memory store's semantics say.
    rng = random.Random(12)
    events = list(Shop(customers=30, days=10, seed=12).events())
    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    t = max(millis(e["timestamp"]) for e in events)
    merges = [
        {
            "event_id": f"m{n}",
            "type": "customers_merged",
            "timestamp": t + n,
            "customer_id": rng.choice(customers),
            "channel": "partner",
            "properties": {"merged_id": rng.choice(customers), "requested_by": "ops"},
        }
        for n in range(40)
    ]
    after = [
        {**_event(n, "page_viewed", c), "timestamp": t + 100 + n} for n, c in enumerate(customers)
    ]
    shop = [events[at : at + 120] for at in range(0, len(events), 120)]
    batches = in_order(*shop, merges[:20], merges[20:], after)
    memory = MemoryState(shard_of=partition_of)
    run_batches(ProfilePipeline(memory, MemoryOutlet(), Stages(engine()), partitions=12), batches)
    run_batches(
        ProfilePipeline(redis_state, MemoryOutlet(), Stages(engine()), partitions=12), batches
    )

    assert len(memory.merged_into) >= 3, "few merges were made: the merge path went untested"
    assert set(memory.merged_into.values()).isdisjoint(memory.merged_into), "a merge chains"
    got = redis_contents(env.redis, env.name)
    want = memory_contents(memory, keys_for(env.redis, env.name))
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


def save_of(
    profile_id: str, version: int, links: list[str] | None = None, customer: bool = True
) -> Save:
    profile = Profile(
        id=profile_id, customer_id=profile_id if customer else None, events=version + 1
    )
    return Save(profile, version, links=links or [])


def test_compare_and_set_refuses_a_moved_version_a_linked_id_and_a_taken_visitor(
    env: Env, redis_state: RedisState
) -> None:
    async def main() -> None:
        assert await redis_state.write(Changes([save_of("C1", 0, ["A"])])) == {
            "C1": SaveStatus.SAVED
        }
        # someone else wrote C1 since version 0 was read
        assert await redis_state.write(Changes([save_of("C1", 0)])) == {"C1": SaveStatus.CONFLICT}
        # A belongs to C1: a save of A's own visitor profile is refused ...
        visitor = save_of("A", 0, customer=False)
        assert await redis_state.write(Changes([visitor])) == {"A": SaveStatus.ALIASED}
        # ... and so is C2 linking it, which leaves C2 unwritten
        assert await redis_state.write(Changes([save_of("C2", 0, ["A"])])) == {
            "C2": SaveStatus.LINK_TAKEN
        }
        view = await redis_state.read(Wanted(ids={"A", "C1", "C2"}))
        assert view.aliases == {"A": "C1"}
        assert view.profiles["C1"].version == 1
        assert view.profiles["C2"].profile is None
        # A used as a customer_id (identity rules): its save removes its own link ...
        assert await redis_state.write(Changes([save_of("A", 0)])) == {"A": SaveStatus.SAVED}
        view = await redis_state.read(Wanted(ids={"A"}))
        assert view.aliases == {} and view.profiles["A"].version == 1
        # ... and A, a profile of its own now, is never linked: not even by C1 again
        assert await redis_state.write(Changes([save_of("C1", 1, ["A"])])) == {
            "C1": SaveStatus.LINK_TAKEN
        }

    asyncio.run(main())


def test_identities_written_as_a_set_by_an_earlier_version_become_a_hash_and_are_erased(
    env: Env, redis_state: RedisState
) -> None:
    """Earlier versions kept a customer's identities as a set: the next write of the
    customer makes it a hash with the same members (and its time to live), a write of
    another customer taking one of them removes it there, and erasure reads a set not
    written since."""
    admin, keys = env.redis, keys_for(env.redis, env.name)
    admin.sadd(keys.identities("C1"), "p-old", "p-moved")
    admin.set(keys.identity("p-old"), "C1")
    admin.set(keys.identity("p-moved"), "C1")
    admin.pexpire(keys.identities("C1"), 10**9)
    admin.sadd(keys.identities("C3"), "p-three")  # never written again before its erasure
    admin.set(keys.identity("p-three"), "C3")

    def saving(profile_id: str, pseudonym: str) -> Changes:
        return Changes([Save(save_of(profile_id, 0).profile, 0, identities=[pseudonym])])

    async def main() -> None:
        assert await redis_state.write(saving("C1", "p-new")) == {"C1": SaveStatus.SAVED}
        assert admin.type(keys.identities("C1")) == b"hash"
        assert set(admin.hkeys(keys.identities("C1"))) == {b"p-old", b"p-moved", b"p-new"}
        assert 0 < admin.pttl(keys.identities("C1")) <= 10**9
        assert await redis_state.write(saving("C2", "p-moved")) == {"C2": SaveStatus.SAVED}
        assert set(admin.hkeys(keys.identities("C1"))) == {b"p-old", b"p-new"}
        assert admin.hkeys(keys.identities("C2")) == [b"p-moved"]
        assert await redis_state.write(Changes([save_of("C3", 0)])) == {"C3": SaveStatus.SAVED}
        assert admin.type(keys.identities("C3")) == b"set"  # no identity in that write
        names = RULES.traits.pseudonymizer
        eraser = Eraser(
            redis_state.client,
            env.name,
            RedisLedger(redis_state.client, keys.erasure_ledger, names),
            names,
        )
        erasure = await eraser.erase(await eraser.find("C3"), "test", "e-1", 1, 2)
        assert erasure.removed["identity"] == 1
        assert admin.exists(keys.identity("p-three"), keys.identities("C3")) == 0

    asyncio.run(main())


def test_identities_are_a_listpack_of_digits_and_a_hash_of_whole_pseudonyms_is_rewritten(
    env: Env, redis_state: RedisState
) -> None:
    """A customer's identities hash holds each pseudonym's 64 hex digits, so it stays a
    listpack; a hash of whole pseudonyms an earlier version wrote is rewritten by the
    customer's next identity write (its time to live kept), and erasure reads both."""
    admin, keys = env.redis, keys_for(env.redis, env.name)
    names = RULES.traits.pseudonymizer
    email, phone, old, three = (
        names.pseudonym("email", f"{n}@example.com") for n in ("e", "p", "o", "t")
    )
    admin.hset(keys.identities("C1"), old, "")
    admin.set(keys.identity(old), "C1")
    admin.pexpire(keys.identities("C1"), 10**9)
    admin.hset(keys.identities("C3"), three, "")  # never written again before its erasure
    admin.set(keys.identity(three), "C3")

    async def main() -> None:
        saving = Save(save_of("C1", 0).profile, 0, identities=[email, phone])
        assert await redis_state.write(Changes([saving])) == {"C1": SaveStatus.SAVED}
        digits = {p.removeprefix("hmac:").encode() for p in (old, email, phone)}
        assert set(admin.hkeys(keys.identities("C1"))) == digits
        assert admin.object("encoding", keys.identities("C1")) == b"listpack"
        assert 0 < admin.pttl(keys.identities("C1")) <= 10**9
        eraser = Eraser(
            redis_state.client,
            env.name,
            RedisLedger(redis_state.client, keys.erasure_ledger, names),
            names,
        )
        for customer, entries in (("C1", 3), ("C3", 1)):
            erasure = await eraser.erase(await eraser.find(customer), "test", customer, 1, 2)
            assert erasure.removed["identity"] == entries, customer
        assert admin.exists(*(keys.identity(p) for p in (email, phone, old, three))) == 0

    asyncio.run(main())


def test_scripts_are_loaded_again_after_the_server_forgot_them(
    env: Env, redis_state: RedisState
) -> None:
    async def main() -> None:
        await redis_state.write(Changes([save_of("C1", 0)]))
        env.redis.script_flush()
        assert await redis_state.write(Changes([save_of("C1", 1)])) == {"C1": SaveStatus.SAVED}

    asyncio.run(main())


def test_a_racing_writer_is_answered_by_recomputing_only_its_profiles(
    env: Env, redis_state: RedisState
) -> None:
    # Between this batch's read and its write another worker saves C: the batch re-reads
    # C and applies its events again on top; D, untouched by the race, is saved once.
    events = [
        {
            "event_id": f"e{i}",
            "type": "page_viewed",
            "timestamp": 1_767_225_600_000 + i,
            "customer_id": customer,
            "channel": "web",
            "properties": {"url": "/"},
        }
        for i, customer in enumerate(["C", "D", "C"])
    ]
    messages = [
        Message("t", 0, i, e["customer_id"].encode(), encode(e)) for i, e in enumerate(events)
    ]
    pipeline = ProfilePipeline(redis_state, MemoryOutlet(), Stages(engine()), partitions=1)
    racer = Profile(id="C", customer_id="C", events=1)

    class Racing:
        async def read(self, wanted: Wanted) -> object:
            return await redis_state.read(wanted)

        def stage(self, changes: Changes) -> None:
            redis_state.stage(changes)

        def discard(self) -> None:
            redis_state.discard()

        async def write(self, changes: Changes) -> dict[str, SaveStatus]:
            if not raced:
                raced.append(await redis_state.write(Changes([Save(racer, 0)])))
            return await redis_state.write(changes)

    raced: list[object] = []
    pipeline.state = Racing()  # type: ignore[assignment]

    async def main() -> None:
        report = await pipeline.run(messages)
        assert report.retries == {"conflict": 1}
        stored = (await redis_state.read(Wanted(ids={"C", "D"}))).profiles
        assert stored["C"].version == 2 and stored["D"].version == 1
        c = stored["C"].profile
        assert c is not None and c.events == 3  # the racer's one and the batch's two

    asyncio.run(main())


def test_a_cached_profile_is_checked_by_version_and_read_again_when_someone_else_wrote_it(
    env: Env,
) -> None:
    client = async_redis(env.settings.redis_url)
    cached = RedisState(
        client,
        env.name,
        pseudonym=RULES.traits.pseudonymizer.of_id,
        shard_of=partition_of,
        cache=ProfileCache(100),
    )
    pipeline = ProfilePipeline(cached, MemoryOutlet(), Stages(engine()), partitions=1)

    def view(n: int) -> Message:
        event = {
            "event_id": f"e{n}",
            "type": "page_viewed",
            "timestamp": 1_767_225_600_000 + n,
            "customer_id": "C",
            "channel": "web",
            "properties": {"url": "/"},
        }
        return Message("t", 0, n, b"C", encode(event))

    async def main() -> None:
        await cached.load_scripts()
        await pipeline.run([view(0)])
        assert cached.cache is not None and len(cached.cache) == 1  # C, as written
        kept = cached.cache.lend("C")
        assert kept is not None and kept.version == 1
        cached.cache.put("C", kept)
        # Nobody else wrote C: the batch starts from the cached profile itself.
        report = await pipeline.run([view(1)])
        assert report.retries == {} and report.round_trips == 2  # one read, one write
        again = cached.cache.lend("C")
        assert again is not None and again.profile is kept.profile and again.version == 2
        cached.cache.put("C", again)
        # The learner's sweep (say) writes C meanwhile: version 3, 10 events.
        other = RedisState(
            client, env.name, pseudonym=RULES.traits.pseudonymizer.of_id, shard_of=partition_of
        )
        racer = Profile(id="C", customer_id="C", events=10)
        assert await other.write(Changes([Save(racer, 2)])) == {"C": SaveStatus.SAVED}
        report = await pipeline.run([view(2)])
        # The read saw version 3, not the cached 2: the stored profile was decided on,
        # with no refused save and no second read or write.
        assert report.retries == {} and report.round_trips == 2
        stored = (await other.read(Wanted(ids={"C"}))).profiles["C"]
        assert stored.version == 4 and stored.profile is not None
        assert stored.profile.events == 11  # the racer's ten and the new one, not 3

        # A batch that fails after its read leaves nothing it may have changed cached.
        class Broken(MemoryOutlet):
            async def publish(self, outputs: Any) -> None:
                raise ConnectionError("broker down")

        pipeline.outlet = Broken()
        with pytest.raises(ConnectionError):
            await pipeline.run([view(3)])
        assert len(cached.cache) == 0

    asyncio.run(main())


def test_a_batch_begun_on_a_staged_profile_that_was_refused_is_decided_again(env: Env) -> None:
    """The worker decides batch 2 while batch 1 is written. Batch 2 starts from batch 1's
    staged C; a racer writes C before batch 1's write, which is refused and re-decided;
    batch 2's save of C, made on the refused C, is refused too and decided again on what
    was stored. Nothing is lost, nothing counted twice; visitors linked by a staged save
    resolve to their customer meanwhile."""
    client = async_redis(env.settings.redis_url)
    state = RedisState(
        client,
        env.name,
        pseudonym=RULES.traits.pseudonymizer.of_id,
        shard_of=partition_of,
        cache=ProfileCache(100),
    )
    other = RedisState(
        client, env.name, pseudonym=RULES.traits.pseudonymizer.of_id, shard_of=partition_of
    )
    pipeline = ProfilePipeline(state, MemoryOutlet(), Stages(engine()), partitions=1)

    def message(n: int, key: str, **fields: Any) -> Message:
        event = {
            "event_id": f"e{n}",
            "type": "page_viewed",
            "timestamp": 1_767_225_600_000 + n,
            "channel": "web",
            "properties": {"url": "/"},
            **fields,
        }
        return Message("t", 0, n, key.encode(), encode(event))

    identify = {
        "event_id": "e2",
        "type": "identify",
        "timestamp": 1_767_225_600_002,
        "customer_id": "C",
        "anonymous_id": "V",
        "channel": "web",
        "properties": {"traits": {}},
    }
    first = [message(0, "C", customer_id="C"), message(1, "C", customer_id="C")]
    first.append(Message("t", 0, 2, b"C", encode(identify)))
    second = [message(3, "C", customer_id="C"), message(4, "V", anonymous_id="V")]

    async def main() -> None:
        await state.load_scripts()
        one = await pipeline.begin(first)
        racer = Profile(id="C", customer_id="C", events=10)
        assert await other.write(Changes([Save(racer, 0)])) == {"C": SaveStatus.SAVED}
        two = await pipeline.begin(second)
        # V resolved to C through the staged link, without a read of V's own profile.
        assert set(two.per_profile) == {"C"}
        first_report = await pipeline.finish(one)
        second_report = await pipeline.finish(two)
        assert first_report.retries["conflict"] == 1
        assert second_report.retries["conflict"] == 1  # started from the refused C
        stored = (await other.read(Wanted(ids={"C", "V"}))).profiles
        c = stored["C"].profile
        assert c is not None and c.events == 10 + 3 + 2  # racer, batch 1, batch 2
        assert stored["C"].version == 3
        assert (await other.read(Wanted(ids={"V"}))).aliases == {"V": "C"}

    asyncio.run(main())


def test_what_a_staged_save_made_due_is_polled_before_its_write_lands(env: Env) -> None:
    """Batch 2 is read while batch 1 is written: a profile batch 1 scheduled is due for
    batch 2 as it would be once that write landed, and it starts from the staged save."""
    client = async_redis(env.settings.redis_url)
    state = RedisState(
        client,
        env.name,
        pseudonym=RULES.traits.pseudonymizer.of_id,
        shard_of=lambda profile_id: 0,
        cache=ProfileCache(100),
    )

    async def main() -> None:
        await state.load_scripts()
        changes = Changes([Save(Profile(id="C", customer_id="C", events=1), 0, churn_due=1000)])
        state.stage(changes)
        staged = changes.saves[0].staged
        assert (await state.read(Wanted(due_shards=(0,), due_until=999))).due == set()
        assert (await state.read(Wanted(due_shards=(1,), due_until=1000))).due == set()
        view = await state.read(Wanted(due_shards=(0,), due_until=1000))
        assert view.due == {"C"} and view.profiles["C"] is staged
        assert await state.write(changes) == {"C": SaveStatus.SAVED}
        # Written: the schedule in Redis says so now, and nothing staged is polled twice.
        view = await state.read(Wanted(due_shards=(0,), due_until=1000))
        assert view.due == {"C"} and view.profiles["C"].version == 1

    asyncio.run(main())


def test_a_write_ending_while_a_read_is_answered_leaves_its_due_polled(env: Env) -> None:
    """Batch 2's read runs in Redis before batch 1's write, but the write's reply is
    handled first: the schedule read is the old one, and what batch 1 staged is still due.
    """
    client = async_redis(env.settings.redis_url)
    state = RedisState(
        client,
        env.name + "-race",
        pseudonym=RULES.traits.pseudonymizer.of_id,
        shard_of=lambda profile_id: 0,
        cache=ProfileCache(100),
    )
    sent = state._execute

    async def main() -> None:
        await state.load_scripts()
        changes = Changes([Save(Profile(id="C", customer_id="C", events=1), 0, churn_due=1000)])
        state.stage(changes)

        async def read_then_write(build: Any, op: str, durable: bool = False) -> list[Any]:
            replies = await sent(build, op, durable)
            if op == "read":
                assert await state.write(changes) == {"C": SaveStatus.SAVED}
            return replies

        state._execute = read_then_write  # type: ignore[method-assign]
        view = await state.read(Wanted(due_shards=(0,), due_until=1000))
        assert view.due == {"C"}

    asyncio.run(main())


def test_a_full_due_poll_names_the_last_it_gave_as_memory_does(env: Env) -> None:
    """A churn schedule with more due than a batch polls gives the earliest, ties by id,
    and the (due time, id) of the last it gave: the batch decides labels only up to there.
    A full trigger schedule cuts nothing, but the batch knows more is due."""
    client = async_redis(env.settings.redis_url)
    redis_state = RedisState(
        client, env.name + "-cut", pseudonym=RULES.traits.pseudonymizer.of_id, shard_of=lambda _: 0
    )
    memory = MemoryState(shard_of=lambda _: 0)
    # Due times with ties; the trigger schedule's come earlier.
    churn = {f"C{n}": 1000 + 100 * (n % 3) for n in range(7)}
    oldest = sorted((at, i) for i, at in churn.items())

    async def main() -> None:
        await redis_state.load_scripts()
        for state in (redis_state, memory):
            changes = Changes(
                [
                    Save(
                        Profile(id=i, customer_id=i, events=1),
                        0,
                        churn_due=at,
                        trigger_due=500 + n,
                    )
                    for n, (i, at) in enumerate(sorted(churn.items()))
                ]
            )
            state.stage(changes)
            statuses = await state.write(changes)
            assert set(statuses.values()) == {SaveStatus.SAVED}
            full = await state.read(Wanted(due_shards=(0,), due_until=1100, due_limit=4))
            # The earliest four of each schedule.
            assert full.due == {i for _, i in oldest[:4]} | {"C0", "C1", "C2", "C3"}
            assert full.due_cut == oldest[3] and full.due_more
            # Fewer due than the limit in every schedule: no cut.
            few = await state.read(Wanted(due_shards=(0,), due_until=1100, due_limit=8))
            assert few.due == set(churn)
            assert few.due_cut is None and not few.due_more
            # Only the trigger schedule full: no cut.
            triggers = await state.read(Wanted(due_shards=(0,), due_until=999, due_limit=2))
            assert triggers.due == {"C0", "C1"}
            assert triggers.due_cut is None and triggers.due_more

    asyncio.run(main())


def _event(n: int, kind: str, customer: str, **properties: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": kind,
        "timestamp": 1_767_225_600_000 + n,
        "customer_id": customer,
        "channel": "web" if kind != "customers_merged" else "partner",
        "properties": properties or {"url": "/"},
    }


def _message(partition: int, offset: int, event: dict[str, Any]) -> Message:
    return Message("t", partition, offset, event["customer_id"].encode(), encode(event))


class _RacedBy:
    """The state store of one worker, whose next write waits for ``racer`` to run first
    (another worker, on another partition, writing meanwhile)."""

    def __init__(self, state: RedisState, racer: Any) -> None:
        self.state, self.racer, self.raced = state, racer, False

    async def read(self, wanted: Wanted) -> object:
        return await self.state.read(wanted)

    def stage(self, changes: Changes) -> None:
        self.state.stage(changes)

    def discard(self) -> None:
        self.state.discard()

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        if not self.raced:
            self.raced = True
            await self.racer()
        return await self.state.write(changes)


def test_an_admin_merge_racing_the_merged_customers_worker_loses_no_event(
    env: Env, redis_state: RedisState
) -> None:
    # B's worker (partition 1) saves B between the merge's read and its write (partition
    # 0): the merge's compare-and-set refuses (B moved) and merges B as it is now. D's
    # worker reads D, then the merge of D into C lands, then D's write comes: refused
    # (D is merged away), re-read, and applied to the survivor C.
    keys = keys_for(env.redis, env.name)
    survivor = ProfilePipeline(redis_state, MemoryOutlet(), Stages(engine()), partitions=2)
    merged = ProfilePipeline(redis_state, MemoryOutlet(), Stages(engine()), partitions=2)

    def merge(n: int, into: str, gone: str) -> dict[str, Any]:
        return _event(n, "customers_merged", into, merged_id=gone, requested_by="ops-admin")

    async def main() -> None:
        await redis_state.load_scripts()
        await survivor.run([_message(0, 0, _event(0, "page_viewed", "A"))])
        await survivor.run([_message(0, 1, _event(1, "page_viewed", "C"))])
        await merged.run([_message(1, 0, _event(2, "page_viewed", "B"))])
        await merged.run([_message(1, 1, _event(3, "page_viewed", "D"))])

        async def b_writes() -> None:
            await merged.run([_message(1, 2, _event(4, "page_viewed", "B"))])

        survivor.state = _RacedBy(redis_state, b_writes)  # type: ignore[assignment]
        report = await survivor.run([_message(0, 2, merge(5, "A", "B"))])
        assert report.retries == {"conflict": 1}

        async def merge_lands() -> None:
            await survivor.run([_message(0, 3, merge(6, "C", "D"))])

        survivor.state = redis_state
        merged.state = _RacedBy(redis_state, merge_lands)  # type: ignore[assignment]
        late = await merged.run([_message(1, 3, _event(7, "page_viewed", "D"))])
        assert late.retries == {"aliased": 1}

    asyncio.run(main())
    client = env.redis
    for survived, gone, events in (("A", "B", 3), ("C", "D", 3)):
        assert not client.exists(keys.profile(gone))
        assert (
            client.get(keys.alias(gone)) == client.get(keys.merged_into(gone)) == survived.encode()
        )
        blob = client.hget(keys.profile(survived), "b")
        assert isinstance(blob, bytes)
        profile = decode(blob)
        # every event of both (the merge itself is not one), each once
        assert (profile.events, profile.merged_customers) == (events, [gone])
