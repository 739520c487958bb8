"""Model snapshots in Redis: the learner publishes, the worker and the api load the newest.

Snapshots are pickles, sealed (``privacy.seal``): a role unpickles only what a holder of
the deployment's key wrote, so write access to Redis is not code execution in every role.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from cdpulse.connections import AsyncRedis
from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary
from cdpulse.models.forecast import ForecastBook
from cdpulse.models.personas_learner import PersonaState
from cdpulse.models.reco_stream import RecoSnapshot, merge_snapshots
from cdpulse.offers.bandit import OfferSnapshot
from cdpulse.ops import metrics
from cdpulse.privacy.seal import Seal
from cdpulse.store.keys import Keys, keys_for
from cdpulse.store.redis import script

log = logging.getLogger(__name__)


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=Versioned)


class SnapshotStore(Generic[S]):
    """The newest snapshot of one model under one key: published by its learner, loaded by
    the worker and the api (``refresh``) and kept in ``current`` for scoring."""

    def __init__(
        self,
        client: AsyncRedis,
        key: str,
        kind: type[S],
        seal: Seal,
        serve: Callable[[S], S] | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.kind = kind
        self.seal = seal
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
        sealed = await self.client.hget(self.key, "blob")
        if not isinstance(sealed, bytes):
            return None
        blob = self.seal.open(sealed)
        if blob is None:
            metrics.SNAPSHOTS_REFUSED.labels(self.kind.__name__).inc()
            log.error(
                "the %s snapshot under %s is not sealed by this deployment's key: not "
                "loaded (written by something other than its learner, or before seals; "
                "the learner replaces it with its next snapshot)",
                self.kind.__name__,
                self.key,
            )
            return None
        snapshot = pickle.loads(blob)  # sealed: written by a holder of the key
        return snapshot if isinstance(snapshot, self.kind) else None

    async def publish(self, snapshot: S) -> bool:
        """Store ``snapshot`` unless a newer version is there already; True when stored.

        A snapshot there that is not sealed by this key is no one's to keep: it is
        replaced whatever version it claims.
        """
        blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        sealed = self.seal.close(blob)
        stored = await self._publish(keys=[self.key], args=[snapshot.version, sealed])
        if not stored:
            there = await self.client.hget(self.key, "blob")
            if isinstance(there, bytes) and self.seal.open(there) is None:
                log.warning(
                    "replacing the unsealed %s snapshot under %s", self.kind.__name__, self.key
                )
                await self.client.delete(self.key)
                stored = await self._publish(keys=[self.key], args=[snapshot.version, sealed])
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


def churn_store(client: AsyncRedis, prefix: str, seal: Seal) -> SnapshotStore[Snapshot]:
    return SnapshotStore(client, Keys(prefix).churn_model, Snapshot, seal)


def campaign_store(client: AsyncRedis, prefix: str, seal: Seal) -> SnapshotStore[CampaignSnapshot]:
    return SnapshotStore(client, Keys(prefix).campaign_model, CampaignSnapshot, seal)


def persona_store(client: AsyncRedis, prefix: str, seal: Seal) -> SnapshotStore[PersonaState]:
    return SnapshotStore(client, Keys(prefix).persona_model, PersonaState, seal)


class RecoShards:
    """The recommender's snapshots, one per shard (reco-events partition), served merged.

    Each shard's learner publishes its own (``publish``); readers refresh every shard
    named in the shard set and serve them as one (``merge_snapshots``), so ``get`` is
    what a single recommender of all customers would recommend.
    """

    def __init__(self, client: AsyncRedis, prefix: str, seal: Seal) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.seal = seal
        self._shards: dict[int, SnapshotStore[RecoSnapshot]] = {}
        self.current: RecoSnapshot | None = None

    def shard(self, shard: int) -> SnapshotStore[RecoSnapshot]:
        store = self._shards.get(shard)
        if store is None:
            store = self._shards[shard] = SnapshotStore(
                self.client, self.keys.reco_model(shard), RecoSnapshot, self.seal
            )
        return store

    def get(self) -> RecoSnapshot | None:
        return self.current

    def newest(self) -> dict[int, RecoSnapshot]:
        """Each shard's newest loaded snapshot, by shard (what ``get`` serves merged)."""
        return {
            shard: store.current
            for shard, store in sorted(self._shards.items())
            if store.current is not None
        }

    async def publish(self, shard: int, snapshot: RecoSnapshot) -> bool:
        """Store one shard's ``snapshot`` unless a newer one is there; True when stored."""
        stored = await self.shard(shard).publish(snapshot)
        if stored:
            await self.client.sadd(self.keys.reco_shards, shard)
        return stored

    async def refresh(self) -> bool:
        """Load every shard's newer snapshot; True when the served one changed."""
        named = await self.client.smembers(self.keys.reco_shards)
        changed = False
        for raw in named:
            changed |= await self.shard(int(raw)).refresh()
        if changed:
            self.current = self.merged()
        return changed

    def merged(self, own: dict[int, RecoSnapshot] | None = None) -> RecoSnapshot | None:
        """Every shard's newest published snapshot served as one; ``own`` replaces the
        published snapshot of the shards it names (a learner's live state)."""
        newest: dict[int, RecoSnapshot | None] = {
            shard: store.current for shard, store in self._shards.items()
        }
        newest.update(own or {})
        found = [snapshot for _, snapshot in sorted(newest.items()) if snapshot is not None]
        return merge_snapshots(found) if found else None


def offer_store(client: AsyncRedis, prefix: str, seal: Seal) -> SnapshotStore[OfferSnapshot]:
    return SnapshotStore(client, Keys(prefix).offer_model, OfferSnapshot, seal)


def forecast_store(client: AsyncRedis, prefix: str, seal: Seal) -> SnapshotStore[ForecastBook]:
    """The demand forecasts: the learner publishes its book, the api serves the newest."""
    return SnapshotStore(client, Keys(prefix).forecast_model, ForecastBook, seal)


async def forecast_lock(client: AsyncRedis, prefix: str, seconds: int) -> bool:
    """One learner learns the closed days at a time: held until it expires."""
    return bool(await client.set(Keys(prefix).forecast_lock, b"1", nx=True, ex=seconds))


class RedisClvStore(SnapshotStore[ClvSnapshot]):
    """The newest lifetime-value parameters, and every customer's order summary (in its
    shard's hash, ``Shard.clv_summaries``: one on one Redis)."""

    def __init__(self, client: AsyncRedis, prefix: str, seal: Seal) -> None:
        self.keys = keys_for(client, prefix)
        super().__init__(client, self.keys.clv_model, ClvSnapshot, seal)
        self.lock_key = self.keys.clv_lock

    async def put_summaries(self, summaries: dict[str, OrderSummary]) -> None:
        by_key: dict[str, dict[Any, Any]] = {}
        for customer, summary in summaries.items():
            key = self.keys.shard(customer).clv_summaries
            by_key.setdefault(key, {})[customer] = summary.to_json()
        if by_key:
            pipe = self.client.pipeline(transaction=False)
            for key, mapping in by_key.items():
                pipe.hset(key, mapping=mapping)
            await pipe.execute()

    async def summaries(self) -> list[OrderSummary]:
        out = []
        for shard in self.keys.shards():
            async for _, raw in self.client.hscan_iter(shard.clv_summaries, count=1000):
                out.append(OrderSummary.from_json(raw))
        return out

    async def lock(self, seconds: int) -> bool:
        """One refit at a time across learners: held until it expires."""
        return bool(await self.client.set(self.lock_key, b"1", nx=True, ex=seconds))
