"""A profile read by a linked id (``store/redis.py`` ``RedisProfileStore.get``): with its
link remembered, the one-round-trip read gives what the three-command read gives on the
same data, whatever happened to the link since (merged elsewhere, erased, replaced by a
profile of its own), and learns the link Redis holds now."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from cdpulse.profile.model import Profile, encode
from cdpulse.store.redis import RedisProfileStore

PREFIX = "t"


class FakeRedis:
    """The commands ``RedisProfileStore.get`` sends, on dicts; counts its round trips."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.strings: dict[str, bytes] = {}
        self.round_trips = 0

    async def hget(self, key: str, field: str) -> bytes | None:
        self.round_trips += 1
        return self._hget(key, field)

    async def get(self, key: str) -> bytes | None:
        self.round_trips += 1
        return self.strings.get(key)

    def _hget(self, key: str, field: str) -> bytes | None:
        return self.hashes.get(key, {}).get(field)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        assert not transaction
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def hget(self, key: str, field: str) -> None:
        self.calls.append(("hget", (key, field)))

    def get(self, key: str) -> None:
        self.calls.append(("get", (key,)))

    async def execute(self) -> list[bytes | None]:
        self.redis.round_trips += 1
        return [
            self.redis._hget(*args) if name == "hget" else self.redis.strings.get(*args)
            for name, args in self.calls
        ]


def _stores(redis: FakeRedis, links: int) -> tuple[RedisProfileStore, RedisProfileStore]:
    """The store under test (links remembered) and the oracle (none remembered)."""
    return (
        RedisProfileStore(redis, PREFIX, remembered_links=links),  # type: ignore[arg-type]
        RedisProfileStore(redis, PREFIX),  # type: ignore[arg-type]
    )


def _save(redis: FakeRedis, store: RedisProfileStore, profile: Profile) -> None:
    redis.hashes[store.keys.profile(profile.id)] = {"b": encode(profile)}


def _link(redis: FakeRedis, store: RedisProfileStore, anonymous: str, customer: str) -> None:
    redis.strings[store.keys.alias(anonymous)] = customer.encode()


def test_a_remembered_link_reads_what_the_three_commands_read() -> None:
    async def run() -> None:
        redis = FakeRedis()
        fast, slow = _stores(redis, 100)
        _save(redis, fast, Profile(id="cust-1", events=3))
        _save(redis, fast, Profile(id="cust-2", events=5))
        _link(redis, fast, "anon-a", "cust-1")

        async def same(profile_id: str) -> Profile | None:
            expected = await slow.get(profile_id)
            got = await fast.get(profile_id)
            assert got == expected
            return got

        assert (await same("anon-a")) == Profile(id="cust-1", events=3)  # learns the link
        before = redis.round_trips
        assert (await fast.get("anon-a")) == Profile(id="cust-1", events=3)
        assert redis.round_trips - before == 1  # remembered: one pipeline
        _link(redis, fast, "anon-a", "cust-2")  # merged into another customer since
        assert (await same("anon-a")) == Profile(id="cust-2", events=5)
        before = redis.round_trips
        await fast.get("anon-a")
        assert redis.round_trips - before == 1  # the new link was learnt
        del redis.strings[fast.keys.alias("anon-a")]  # erased
        assert (await same("anon-a")) is None
        _save(redis, fast, Profile(id="anon-a", events=1))  # a profile of its own again
        _link(redis, fast, "anon-a", "cust-1")
        await same("anon-a")
        assert await same("nobody") is None
        assert await same("cust-2") == Profile(id="cust-2", events=5)

    asyncio.run(run())


def test_random_histories_read_as_without_remembered_links() -> None:
    """Oracle: the store that remembers no link, reading the same data after each change."""

    async def run() -> None:
        rng = random.Random(7)
        redis = FakeRedis()
        fast, slow = _stores(redis, 3)  # fewer than the ids: forgetting is exercised too
        ids = [f"id-{i}" for i in range(8)]
        for step in range(2000):
            target = rng.choice(ids)
            change = rng.random()
            if change < 0.3:
                _link(redis, fast, target, rng.choice(ids))
            elif change < 0.45:
                redis.strings.pop(fast.keys.alias(target), None)
            elif change < 0.6:
                _save(redis, fast, Profile(id=target, events=step))
            elif change < 0.7:
                redis.hashes.pop(fast.keys.profile(target), None)
            read = rng.choice(ids)
            assert await fast.get(read) == await slow.get(read), step
        assert len(fast._links) <= 3

    asyncio.run(run())


def test_without_remembered_links_nothing_is_learnt() -> None:
    async def run() -> None:
        redis = FakeRedis()
        _, slow = _stores(redis, 0)
        _save(redis, slow, Profile(id="cust-1"))
        _link(redis, slow, "anon-a", "cust-1")
        for _ in range(2):
            before = redis.round_trips
            assert await slow.get("anon-a") == Profile(id="cust-1")
            assert redis.round_trips - before == 3
        assert not slow._links

    asyncio.run(run())
