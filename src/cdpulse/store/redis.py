"""Reading profiles from Redis: what the API, the CLI and the tools need.

Writes go through the pipeline's state store (``store/state.py``) only. A profile is a
hash ``{v: version, b: MessagePack}``; an id linked to a customer has an alias key.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from cdpulse.profile.model import Profile, decode
from cdpulse.store.keys import Keys


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def script(name: str) -> str:
    """The source of one of the store's Lua scripts."""
    return resources.files("cdpulse.store").joinpath(name).read_text(encoding="utf-8")


class RedisProfileStore:
    """Profiles, aliases and the watermark in Redis under ``prefix``, read-only."""

    def __init__(self, client: aioredis.Redis, prefix: str, retention_ms: int = 0) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.retention_ms = retention_ms

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

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        """The customer each id is linked to; ids without a link map to themselves."""
        if not ids:
            return {}
        targets = await self.client.mget([self.keys.alias(i) for i in ids])
        return {i: _text(t) if t else i for i, t in zip(ids, targets, strict=True)}

    async def get(self, profile_id: str) -> Profile | None:
        """One profile, following a link: one round trip, two when the id is linked."""
        return (await self._get(profile_id, watermark=False))[0]

    async def get_as_of(self, profile_id: str) -> tuple[Profile | None, int]:
        """One profile and the watermark (``watermark()``) in the same round trip: what a
        profile read shows, as of the newest event time seen."""
        return await self._get(profile_id, watermark=True)

    async def _get(self, profile_id: str, watermark: bool) -> tuple[Profile | None, int]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.alias(profile_id))
        pipe.hget(self.keys.profile(profile_id), "b")
        if watermark:
            pipe.hvals(self.keys.watermark)
        replies = await pipe.execute()
        alias, blob = replies[0], replies[1]
        at = max((int(v) for v in replies[2]), default=0) if watermark else 0
        if alias is not None:
            blob = await self.client.hget(self.keys.profile(_text(alias)), "b")
        return (decode(blob) if isinstance(blob, bytes) else None), at

    async def watermark(self) -> int:
        """The newest event time seen on any partition (epoch ms); 0 when none."""
        values = await self.client.hvals(self.keys.watermark)
        return max((int(v) for v in values), default=0)

    async def count(self) -> int:
        """How many profiles are stored."""
        return int(await self.client.get(self.keys.profile_count) or 0)
