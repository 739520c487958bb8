"""Reading profiles from Redis: what the API, the CLI and the tools need.

Writes go through the pipeline's state store (``store/state.py``) only. A profile is a
hash ``{v: version, b: MessagePack}``; an id linked to a customer has an alias key.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from cdpulse.connections import AsyncRedis, async_redis
from cdpulse.profile.model import Profile, decode
from cdpulse.store.keys import keys_for

# How old a watermark a profile read may show (``recent_watermark``), in seconds.
WATERMARK_MAX_AGE = 0.1


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


async def get_many(client: AsyncRedis, keys: list[str]) -> list[bytes | str | None]:
    """GET of every key in one round trip: MGET on one Redis; on a Redis Cluster, where
    keys of several slots cannot share a command, an MGET per slot."""
    if isinstance(client, aioredis.RedisCluster):
        return await client.mget_nonatomic(keys)
    return await client.mget(keys)


def script(name: str) -> str:
    """The source of one of the store's Lua scripts."""
    return resources.files("cdpulse.store").joinpath(name).read_text(encoding="utf-8")


class RedisProfileStore:
    """Profiles, aliases and the watermark in Redis under ``prefix``, read-only."""

    def __init__(
        self, client: AsyncRedis, prefix: str, retention_ms: int = 0, remembered_links: int = 0
    ) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self.retention_ms = retention_ms
        self._mark: tuple[int, float] | None = None  # (watermark, loop time it was read)
        self._reading: asyncio.Task[int] | None = None
        # Linked id -> the customer its link named when last read, at most
        # ``remembered_links`` of them (the oldest learnt forgotten first): only a guess
        # that lets ``get`` ask its three questions at once (``_get_linked``).
        self.remembered_links = remembered_links
        self._links: dict[str, str] = {}

    @classmethod
    def from_url(
        cls, url: str, prefix: str, retention_ms: int = 0, **options: Any
    ) -> RedisProfileStore:
        """``options``: credentials and TLS (``connections.redis_options``); a
        ``redis+cluster://`` URL names a Redis Cluster."""
        return cls(async_redis(url, **options), prefix, retention_ms)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        """The customer each id is linked to; ids without a link map to themselves."""
        if not ids:
            return {}
        targets = await get_many(self.client, [self.keys.alias(i) for i in ids])
        return {i: _text(t) if t else i for i, t in zip(ids, targets, strict=True)}

    async def get(self, profile_id: str) -> Profile | None:
        """One profile, following a link: one round trip for a stored profile, two for an
        unknown id, three for a linked id, and one (``_get_linked``) for a linked id read
        before when links are remembered (``remembered_links``; the api's).

        A profile's key and a link of the same id never exist together (``write.lua``
        deletes a visitor's profile in the script that links it, and a customer's save
        deletes its own link), so the profile is asked for first, alone: one command
        costs the api ~40-60 µs of CPU less than a pipeline holding the link's ``GET`` too.
        """
        guess = self._links.get(profile_id)
        if guess is not None:
            blob = await self._get_linked(profile_id, guess)
        else:
            blob = await self.client.hget(self.keys.profile(profile_id), "b")
            if blob is None:
                alias = await self.client.get(self.keys.alias(profile_id))
                if alias is not None:
                    target = _text(alias)
                    self._learn(profile_id, target)
                    blob = await self.client.hget(self.keys.profile(target), "b")
        return decode(blob) if isinstance(blob, bytes) else None

    async def _get_linked(self, profile_id: str, guess: str) -> Any:
        """``get``'s three reads of an id whose link named ``guess`` when last read, in one
        round trip instead of three, and decided as ``get`` decides them: its own profile
        first, else its link's target's. The third read asks for ``guess``'s profile before
        the link is known; when the link now names another customer (a merge since), that
        customer's profile is read after it, as ``get`` would have. Measured on the api:
        ~380 -> ~190 µs of CPU per read of a linked id (3 commands -> 1 pipeline).
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.profile(profile_id), "b")
        pipe.get(self.keys.alias(profile_id))
        pipe.hget(self.keys.profile(guess), "b")
        own, alias, guessed = await pipe.execute()
        if own is not None or alias is None:
            self._links.pop(profile_id, None)  # no longer (only) a link
            return own
        target = _text(alias)
        if target == guess:
            return guessed
        self._learn(profile_id, target)
        return await self.client.hget(self.keys.profile(target), "b")

    def _learn(self, profile_id: str, target: str) -> None:
        """Remember that ``profile_id``'s link names ``target`` (when links are remembered)."""
        if not self.remembered_links:
            return
        links = self._links
        links.pop(profile_id, None)  # re-learnt: now the newest
        if len(links) >= self.remembered_links:
            del links[next(iter(links))]  # dicts keep insertion order: the oldest learnt
        links[profile_id] = target

    async def get_as_of(self, profile_id: str) -> tuple[Profile | None, int]:
        """One profile and the watermark its scores are computed at: the newest event
        time seen (``watermark()``), read at most ``WATERMARK_MAX_AGE`` seconds ago, and
        never before the profile's own newest event."""
        profile = await self.get(profile_id)
        at = await self.recent_watermark()
        return profile, (max(at, profile.last_seen) if profile is not None else at)

    async def recent_watermark(self) -> int:
        """``watermark()`` as read at most ``WATERMARK_MAX_AGE`` seconds ago: every read of
        a profile shows one, and at 1,000 reads/s asking Redis each time cost a command per
        read for a value that moves a batch at a time. Concurrent callers share one read."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._mark is not None and now - self._mark[1] < WATERMARK_MAX_AGE:
            return self._mark[0]
        if self._reading is None or self._reading.done():
            self._reading = loop.create_task(self.watermark())
        at = await asyncio.shield(self._reading)
        self._mark = (at, now)
        return at

    async def watermark(self) -> int:
        """The newest event time seen on any partition (epoch ms); 0 when none."""
        values = await self.client.hvals(self.keys.watermark)
        return max((int(v) for v in values), default=0)

    async def count(self) -> int:
        """How many profiles are stored (a count per shard on a Redis Cluster)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in self.keys.shards():
            pipe.get(shard.profile_count)
        return sum(int(n or 0) for n in await pipe.execute())
