"""Reading every profile, or every segment's members, page by page: SCAN (or ZRANGEBYLEX)
and one pipelined HGET of the profiles per page, never a round trip per profile. What
``cdpulse export`` reads. On a Redis Cluster SCAN visits every master, and a segment's
members are gathered from every shard (``Keys.shards``), still in id order."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cdpulse.connections import AsyncRedis
from cdpulse.profile.model import Profile, decode
from cdpulse.store.keys import Shard, keys_for


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class ProfileScan:
    """Pages of the profiles stored under ``prefix``."""

    def __init__(self, client: AsyncRedis, prefix: str, page: int = 1000) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self.page = page

    async def profiles(self) -> AsyncIterator[list[Profile]]:
        """Every stored profile once. SCAN may return a key twice (while Redis resizes its
        table), so the keys already read are remembered: ~100 bytes per profile."""
        seen: set[bytes | str] = set()
        fresh: list[bytes | str] = []
        async for key in self.client.scan_iter(
            match=self.keys.ids_pattern("profile"), count=self.page
        ):
            if key not in seen:
                seen.add(key)
                fresh.append(key)
            if len(fresh) >= self.page:
                yield await self._read(fresh)
                fresh = []
        if fresh:
            yield await self._read(fresh)

    async def segments(self) -> list[str]:
        """The segments with a member list (``Keys.members``), by name."""
        names = {
            self.keys.segment_in(_text(k))
            async for k in self.client.scan_iter(
                match=self.keys.shared_pattern("segment:*:members"), count=self.page
            )
        }
        return sorted(names)

    async def members(self, segment: str) -> AsyncIterator[list[Profile]]:
        """The profiles of a segment's members, a page at a time in id order; a member
        whose profile is gone (erased since) is left out."""
        after = ""
        while True:
            ids = await members_page(self.client, self.keys.shards(), segment, after, self.page)
            if not ids:
                return
            yield await self._read([self.keys.profile(i) for i in ids])
            if len(ids) < self.page:
                return
            after = ids[-1]

    async def _read(self, keys: list[bytes | str]) -> list[Profile]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "b")
        return [decode(b) for b in await pipe.execute() if isinstance(b, bytes)]


async def members_page(
    client: AsyncRedis, shards: tuple[Shard, ...], segment: str, after: str, limit: int
) -> list[str]:
    """Up to ``limit`` members of ``segment`` after ``after`` in id order (byte order,
    as ZRANGEBYLEX gives it), gathered from every shard's member list."""
    low = b"(" + after.encode() if after else b"-"
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.zrangebylex(shard.members(segment), low, b"+", 0, limit)
    found: list[bytes] = sorted(m for page in await pipe.execute() for m in page)
    return [_text(m) for m in found[:limit]]
