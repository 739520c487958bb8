"""The Redis ProfileStore: pipelined reads, Lua compare-and-set writes, one round trip each.

A profile is a hash ``{v: version, b: MessagePack}``; see ``save.lua`` for why the
alias check sits inside the write.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from cdpulse.ops import metrics
from cdpulse.profile.model import Profile, decode, encode
from cdpulse.store.base import SaveStatus, Stored, Write
from cdpulse.store.keys import Keys

_STATUS = {-1: SaveStatus.CONFLICT, -2: SaveStatus.ALIASED}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def script(name: str) -> str:
    return resources.files("cdpulse.store").joinpath(name).read_text(encoding="utf-8")


class RedisProfileStore:
    """Profiles, aliases and watermarks in Redis under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str, retention_ms: int = 0) -> None:
        self.client = client
        # Profiles and identity links not written for this long expire (0: never).
        self.retention_ms = retention_ms
        self.keys = Keys(prefix)
        self._save = client.register_script(script("save.lua"))
        self._watermark = client.register_script(script("watermark.lua"))

    @classmethod
    def from_url(
        cls, url: str, prefix: str, retention_ms: int = 0, **options: Any
    ) -> RedisProfileStore:
        """``options``: credentials and TLS (``connections.redis_options``)."""
        client = aioredis.Redis.from_url(
            url, decode_responses=False, socket_timeout=10, socket_connect_timeout=5, **options
        )
        return cls(client, prefix, retention_ms)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def _timed(self, op: str, pipe: Any) -> list[Any]:
        started = time.perf_counter()
        result: list[Any] = await pipe.execute()
        metrics.REDIS_SECONDS.labels(op).observe(time.perf_counter() - started)
        return result

    async def load(self, ids: list[str]) -> dict[str, Stored]:
        pipe = self.client.pipeline(transaction=False)
        for profile_id in ids:
            pipe.hmget(self.keys.profile(profile_id), "v", "b")
        out: dict[str, Stored] = {}
        for profile_id, (version, blob) in zip(ids, await self._timed("load", pipe), strict=True):
            out[profile_id] = Stored(int(version or 0), decode(blob) if blob else None)
        return out

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        targets = await self.client.mget([self.keys.alias(i) for i in ids])
        return {i: _text(t) if t else i for i, t in zip(ids, targets, strict=True)}

    async def link(self, anonymous_id: str, customer_id: str) -> str:
        # SET NX GET: atomic "link unless already linked, and tell me to whom".
        previous = await self.client.set(
            self.keys.alias(anonymous_id),
            customer_id,
            nx=True,
            get=True,
            px=self.retention_ms or None,
        )
        return _text(previous) if isinstance(previous, bytes | str) else customer_id

    async def save(self, writes: list[Write]) -> dict[str, SaveStatus]:
        pipe = self.client.pipeline(transaction=False)
        for write in writes:
            profile_id = write.profile.id
            await self._save(
                keys=[self.keys.profile(profile_id), self.keys.alias(profile_id)],
                args=[write.expected_version, encode(write.profile), self.retention_ms],
                client=pipe,
            )
        results = await self._timed("save", pipe)
        out: dict[str, SaveStatus] = {}
        created = 0
        for write, result in zip(writes, results, strict=True):
            code = int(result)
            out[write.profile.id] = _STATUS.get(code, SaveStatus.SAVED)
            created += code == 1
        if created:
            await self.client.incrby(self.keys.profile_count, created)
        return out

    async def retire(self, ids: list[str]) -> None:
        if not ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for profile_id in ids:
            pipe.delete(self.keys.profile(profile_id))
        removed = sum(int(n) for n in await self._timed("retire", pipe))
        if removed:
            await self.client.decrby(self.keys.profile_count, removed)

    async def advance_watermark(self, marks: dict[str, int]) -> None:
        if marks:
            args: list[Any] = []
            for partition, millis in marks.items():
                args += [partition, millis]
            await self._watermark(keys=[self.keys.watermark], args=args)

    async def watermark(self) -> int:
        values = await self.client.hvals(self.keys.watermark)
        return max((int(v) for v in values), default=0)

    async def low_watermark(self, partitions: int) -> int:
        values = await self.client.hvals(self.keys.watermark)
        if len(values) < partitions:
            return 0
        return min((int(v) for v in values), default=0)

    async def schedule(self, dues: dict[str, int]) -> None:
        if dues:
            await self.client.zadd(self.keys.churn_due, dict(dues.items()))

    async def due(self, until: int, limit: int) -> list[str]:
        ids = await self.client.zrangebyscore(self.keys.churn_due, "-inf", until, 0, limit)
        return [_text(i) for i in ids if isinstance(i, bytes | str)]

    async def unschedule(self, ids: list[str]) -> None:
        if ids:
            await self.client.zrem(self.keys.churn_due, *ids)

    async def get(self, profile_id: str) -> Profile | None:
        target = (await self.resolve([profile_id]))[profile_id]
        return (await self.load([target]))[target].profile

    async def count(self) -> int:
        return int(await self.client.get(self.keys.profile_count) or 0)
