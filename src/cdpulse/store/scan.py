"""Reading every profile, or every segment's members, page by page: one SCAN (or
ZRANGEBYLEX) and one pipelined HGET of the profiles per page, never a round trip per
profile. What ``cdpulse export`` reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from cdpulse.profile.model import Profile, decode
from cdpulse.store.keys import Keys, glob_escape


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class ProfileScan:
    """Pages of the profiles stored under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str, page: int = 1000) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.page = page

    async def profiles(self) -> AsyncIterator[list[Profile]]:
        """Every stored profile once. SCAN may return a key twice (while Redis resizes its
        table), so the keys already read are remembered: ~100 bytes per profile."""
        pattern = f"{glob_escape(self.keys.prefix)}:{{*}}:profile"
        seen: set[bytes | str] = set()
        cursor = 0
        while True:
            cursor, found = await self.client.scan(cursor, match=pattern, count=self.page)
            fresh = [k for k in found if k not in seen]
            seen.update(fresh)
            if fresh:
                yield await self._read(fresh)
            if cursor == 0:
                return

    async def segments(self) -> list[str]:
        """The segments with a member list (``Keys.members``), by name."""
        head = f"{self.keys.prefix}:segment:"
        pattern = f"{glob_escape(head)}*:members"
        names = {
            _text(k)[len(head) : -len(":members")]
            async for k in self.client.scan_iter(match=pattern, count=self.page)
        }
        return sorted(names)

    async def members(self, segment: str) -> AsyncIterator[list[Profile]]:
        """The profiles of a segment's members, a page at a time in id order; a member
        whose profile is gone (erased since) is left out."""
        key = self.keys.members(segment)
        after = b""
        while True:
            low = b"(" + after if after else b"-"
            ids: list[bytes] = await self.client.zrangebylex(key, low, b"+", 0, self.page)  # type: ignore[assignment]
            if not ids:
                return
            yield await self._read([self.keys.profile(_text(i)) for i in ids])
            if len(ids) < self.page:
                return
            after = ids[-1]

    async def _read(self, keys: list[bytes | str]) -> list[Profile]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "b")
        return [decode(b) for b in await pipe.execute() if isinstance(b, bytes)]
