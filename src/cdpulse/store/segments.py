"""Segment member lists and the RFM sketches in Redis.

Per segment, a sorted set of member ids (all scores 0, so members page in id order with
ZRANGEBYLEX; one per shard on a Redis Cluster, gathered in order), written with each
member's profile (``store/state.py``); the RFM sketches
as one blob with a version. A customer's memberships themselves are generations in their
profile (``Profile.segments``).
"""

from __future__ import annotations

from typing import Any

from cdpulse.connections import AsyncRedis
from cdpulse.models.clv.lifetime import OrderSummary
from cdpulse.segments.sketches import RfmSketches
from cdpulse.store.keys import keys_for
from cdpulse.store.redis import script
from cdpulse.store.scan import members_page

# A Redis cursor is at most 64 bits: a shard's pass starts at shard * _SHARD_CURSOR.
_SHARD_CURSOR = 1 << 64


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class SegmentKeys:
    """Key names of the RFM sketches and their rebuild's lock under one prefix (member
    lists and summaries are the shards', ``Shard.members`` and ``Shard.clv_summaries``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def rfm_sketches(self) -> str:
        """Hash {version, blob}: the newest RFM sketches."""
        return f"{self.prefix}:model:rfm"

    @property
    def rfm_lock(self) -> str:
        return f"{self.prefix}:rfm:rebuild-lock"


class RedisMembershipStore:
    """Segment member lists and the RFM sketches in Redis (memberships themselves live in
    the profile and are written with it, ``store/state.py``)."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = SegmentKeys(prefix)
        self.shards = keys_for(client, prefix).shards()
        self._publish = client.register_script(script("publish_model.lua"))
        self.sketches: RfmSketches | None = None
        self.sketches_version = 0

    async def sizes(self, names: list[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for shard in self.shards:
                pipe.zcard(shard.members(name))
        counts = [int(c) for c in await pipe.execute()]
        n = len(self.shards)
        return {name: sum(counts[at * n : (at + 1) * n]) for at, name in enumerate(names)}

    async def members(self, name: str, after: str, limit: int) -> list[str]:
        return await members_page(self.client, self.shards, name, after, limit)

    # --- the RFM sketches ---------------------------------------------------------

    async def lock(self, seconds: int) -> bool:
        """One rebuild at a time across learners: held until it expires."""
        return bool(await self.client.set(self.keys.rfm_lock, b"1", nx=True, ex=seconds))

    async def publish_sketches(self, sketches: RfmSketches) -> bool:
        version = max(self.sketches_version, await self._stored_version()) + 1
        args: list[Any] = [version, sketches.to_bytes()]
        stored = bool(await self._publish(keys=[self.keys.rfm_sketches], args=args))
        if stored:
            self.sketches, self.sketches_version = sketches, version
        return stored

    async def refresh_sketches(self) -> bool:
        """Load newer sketches if a learner published some; True when they changed."""
        if await self._stored_version() <= self.sketches_version:
            return False
        version, blob = await self.client.hmget(self.keys.rfm_sketches, "version", "blob")
        if not isinstance(blob, bytes):
            return False
        self.sketches, self.sketches_version = RfmSketches.from_bytes(blob), int(version or 0)
        return True

    async def summary_page(self, cursor: int, count: int) -> tuple[int, dict[str, OrderSummary]]:
        """One HSCAN page of the customers' order summaries (the lifetime-value store's),
        and the cursor of the next page (0: the pass is complete). On a Redis Cluster the
        pass goes through the shards in turn: the cursor's high bits name the shard."""
        shard, at = divmod(cursor, _SHARD_CURSOR)
        key = self.shards[shard].clv_summaries
        at, page = await self.client.hscan(key, at, count=count)
        if not isinstance(page, dict):  # HSCAN NOVALUES gives a list; never asked for here
            raise TypeError(f"HSCAN of {key} gave {type(page).__name__}")
        if int(at):
            nxt = shard * _SHARD_CURSOR + int(at)
        elif shard + 1 < len(self.shards):
            nxt = (shard + 1) * _SHARD_CURSOR
        else:
            nxt = 0
        return nxt, {_text(c): OrderSummary.from_json(raw) for c, raw in page.items()}

    async def _stored_version(self) -> int:
        return int(await self.client.hget(self.keys.rfm_sketches, "version") or 0)
