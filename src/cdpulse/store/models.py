"""Model snapshots in Redis: the learner publishes, every worker loads the newest."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import redis.asyncio as aioredis

from cdpulse.models.churn.model import Snapshot
from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.offers.bandit import OfferSnapshot
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=Versioned)


class SnapshotStore(Generic[S]):
    """The newest snapshot of one model under one key: published by its learner, loaded by
    every worker (``refresh``) and kept in ``current`` for scoring."""

    def __init__(
        self,
        client: aioredis.Redis,
        key: str,
        kind: type[S],
        serve: Callable[[S], S] | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.kind = kind
        # When given, ``current`` is ``serve`` of a copy of what was published or loaded,
        # never the learner's own object, which keeps changing after it was published.
        self.serve = serve
        self._publish = client.register_script(script("publish_model.lua"))
        self.current: S | None = None

    def get(self) -> S | None:
        return self.current

    async def version(self) -> int:
        return int(await self.client.hget(self.key, "version") or 0)

    async def load(self) -> S | None:
        blob = await self.client.hget(self.key, "blob")
        if not isinstance(blob, bytes):
            return None
        snapshot = pickle.loads(blob)  # our own snapshots, from our own Redis
        return snapshot if isinstance(snapshot, self.kind) else None

    async def publish(self, snapshot: S) -> bool:
        """Store ``snapshot`` unless a newer version is there already; True when stored."""
        blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        stored = await self._publish(keys=[self.key], args=[snapshot.version, blob])
        if stored:
            self.current = snapshot if self.serve is None else self.serve(pickle.loads(blob))
        return bool(stored)

    async def refresh(self) -> bool:
        """Load a newer snapshot if there is one; True when it changed."""
        have = self.current.version if self.current else 0
        if await self.version() <= have:
            return False
        snapshot = await self.load()
        if snapshot is not None and snapshot.version > have:
            self.current = snapshot if self.serve is None else self.serve(snapshot)
            return True
        return False


def churn_store(client: aioredis.Redis, prefix: str) -> SnapshotStore[Snapshot]:
    return SnapshotStore(client, Keys(prefix).churn_model, Snapshot)


def reco_store(client: aioredis.Redis, prefix: str) -> SnapshotStore[RecoSnapshot]:
    return SnapshotStore(client, Keys(prefix).reco_model, RecoSnapshot, RecoSnapshot.served)


def offer_store(client: aioredis.Redis, prefix: str) -> SnapshotStore[OfferSnapshot]:
    return SnapshotStore(client, Keys(prefix).offer_model, OfferSnapshot)


class RedisClvStore(SnapshotStore[ClvSnapshot]):
    """The newest lifetime-value parameters, and every customer's order summary."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        keys = Keys(prefix)
        super().__init__(client, keys.clv_model, ClvSnapshot)
        self.summaries_key = keys.clv_summaries
        self.lock_key = keys.clv_lock

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
