"""Model snapshots in Redis: the learner publishes, every worker loads the newest."""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.models.churn import Snapshot
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script


class RedisModelStore:
    """The newest churn snapshot under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.key = Keys(prefix).churn_model
        self._publish = client.register_script(script("publish_model.lua"))

    async def version(self) -> int:
        return int(await self.client.hget(self.key, "version") or 0)

    async def load(self) -> Snapshot | None:
        blob = await self.client.hget(self.key, "blob")
        return Snapshot.loads(blob) if isinstance(blob, bytes) else None

    async def publish(self, snapshot: Snapshot) -> bool:
        stored = await self._publish(keys=[self.key], args=[snapshot.version, snapshot.dumps()])
        return bool(stored)


class ModelRegistry:
    """The snapshot this process scores with, refreshed when a newer one is published."""

    def __init__(self, store: RedisModelStore) -> None:
        self.store = store
        self.current: Snapshot | None = None

    def get(self) -> Snapshot | None:
        return self.current

    async def refresh(self) -> bool:
        """Load a newer snapshot if there is one; True when it changed."""
        have = self.current.version if self.current else 0
        if await self.store.version() <= have:
            return False
        snapshot = await self.store.load()
        if snapshot is not None and snapshot.version > have:
            self.current = snapshot
            return True
        return False
