"""A write on a Redis Cluster is answered once a replica holds it (``store/replicas.py``):
with every replica in step nothing is counted; with a master's replica frozen (SIGSTOP)
the write still goes through, after the wait, and is counted as unreplicated."""

from __future__ import annotations

import asyncio
import os
import signal

from prometheus_client import REGISTRY

from cdpulse.connections import async_redis
from cdpulse.pipeline.state import Changes, Save, SaveStatus
from cdpulse.profile.model import Profile
from cdpulse.store.state import RedisState
from tests.cluster.nodes import RedisClusterNodes
from tests.integration.conftest import Env
from tests.unit.test_pipeline import RULES, partition_of

UNREPLICATED = "cdpulse_redis_unreplicated_writes_total"


def unreplicated() -> float:
    return REGISTRY.get_sample_value(UNREPLICATED) or 0.0


def test_a_write_waits_for_a_replica_and_one_made_without_is_counted(
    env: Env, redis_cluster: RedisClusterNodes
) -> None:
    async def save(state: RedisState, version: int) -> SaveStatus:
        profile = Profile(id="C1", customer_id="C1", events=version + 1)
        return (await state.write(Changes([Save(profile, version)])))["C1"]

    async def main() -> None:
        client = async_redis(env.settings.redis_url)
        state = RedisState(
            client, env.name, pseudonym=RULES.traits.pseudonymizer.of_id, shard_of=partition_of
        )
        try:
            before = unreplicated()
            assert await save(state, 0) == SaveStatus.SAVED
            assert unreplicated() == before, "a replica in step was not waited for"

            master = redis_cluster.master_of(state.keys.profile("C1"))
            replica = next(r.replica for r in redis_cluster.slots() if r.primary == master)
            pid = redis_cluster.pid_of(replica)
            os.kill(pid, signal.SIGSTOP)
            try:
                assert await save(state, 1) == SaveStatus.SAVED
            finally:
                os.kill(pid, signal.SIGCONT)
            assert unreplicated() > before, "a write no replica acknowledged went uncounted"
        finally:
            await client.aclose()

    asyncio.run(main())
