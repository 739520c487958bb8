"""Model snapshots in Redis: the learner publishes, every worker loads the newest."""

from __future__ import annotations

import pickle

import redis.asyncio as aioredis

from cdpulse.models.churn import Snapshot
from cdpulse.models.lifetime import ClvSnapshot, OrderSummary
from cdpulse.models.reco_stream import RecoSnapshot
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


class RedisClvStore:
    """Order summaries of every customer, and the newest lifetime-value parameters."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        keys = Keys(prefix)
        self.summaries_key = keys.clv_summaries
        self.model_key = keys.clv_model
        self.lock_key = keys.clv_lock
        self._publish = client.register_script(script("publish_model.lua"))
        self.current: ClvSnapshot | None = None

    def get(self) -> ClvSnapshot | None:
        return self.current

    async def put_summaries(self, summaries: dict[str, OrderSummary]) -> None:
        if summaries:
            await self.client.hset(
                self.summaries_key, mapping={k: s.to_json() for k, s in summaries.items()}
            )

    async def summaries(self) -> list[OrderSummary]:
        out = []
        async for _, raw in self.client.hscan_iter(self.summaries_key, count=1000):
            out.append(OrderSummary.from_json(raw))
        return out

    async def lock(self, seconds: int) -> bool:
        """One refit at a time across workers: held until it expires."""
        return bool(await self.client.set(self.lock_key, b"1", nx=True, ex=seconds))

    async def publish(self, snapshot: ClvSnapshot) -> bool:
        blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        stored = await self._publish(keys=[self.model_key], args=[snapshot.version, blob])
        if stored:
            self.current = snapshot
        return bool(stored)

    async def refresh(self) -> bool:
        """Load newer parameters if there are some; True when they changed."""
        have = self.current.version if self.current else 0
        if int(await self.client.hget(self.model_key, "version") or 0) <= have:
            return False
        blob = await self.client.hget(self.model_key, "blob")
        if isinstance(blob, bytes):
            snapshot = pickle.loads(blob)  # our own snapshots, from our own Redis
            if isinstance(snapshot, ClvSnapshot) and snapshot.version > have:
                self.current = snapshot
                return True
        return False


class RedisRecoStore:
    """The newest recommender snapshot: the learner publishes, every worker serves it."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.key = Keys(prefix).reco_model
        self._publish = client.register_script(script("publish_model.lua"))
        self.current: RecoSnapshot | None = None

    def get(self) -> RecoSnapshot | None:
        return self.current

    async def version(self) -> int:
        return int(await self.client.hget(self.key, "version") or 0)

    async def load(self) -> RecoSnapshot | None:
        blob = await self.client.hget(self.key, "blob")
        if not isinstance(blob, bytes):
            return None
        snapshot = pickle.loads(blob)  # our own snapshots, from our own Redis
        return snapshot if isinstance(snapshot, RecoSnapshot) else None

    async def publish(self, snapshot: RecoSnapshot) -> bool:
        blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        stored = await self._publish(keys=[self.key], args=[snapshot.version, blob])
        if stored:
            self.current = snapshot
        return bool(stored)

    async def refresh(self) -> bool:
        have = self.current.version if self.current else 0
        if await self.version() <= have:
            return False
        snapshot = await self.load()
        if snapshot is not None and snapshot.version > have:
            self.current = snapshot
            return True
        return False
