"""A Redis Cluster write acknowledged once a replica holds it (``WAIT``).

A master replicates asynchronously: it answers a write before its replica has it, and a
master killed then loses it when the replica takes over. The worker commits a batch's
offsets once Redis acknowledged its write, so such a loss would be a committed event
missing from its profile. Here every write round trip on a cluster ends, on each master
that has a replica, with ``WAIT 1 <REPLICA_WAIT_MS>`` on the same connection: the round
trip returns once a replica holds what that master wrote. A master killed afterwards is
replaced by a replica that has it; one killed before fails the round trip, and the batch
is written again (writes are idempotent).

A replica down or further behind than ``REPLICA_WAIT_MS`` does not stop the writes: the
round trip goes on after the wait, counted in ``cdpulse_redis_unreplicated_writes_total``
(a master lost before its replica caught up loses those: ``cdpulse rebuild`` repairs).
The client's slot map is then read again (at most every ``REFRESH_SECONDS``): a dead
replica stays in it until then, and every write would wait for it; the cluster leaves
it out once it marked it failed (``cluster-node-timeout``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cdpulse.ops import metrics

log = logging.getLogger(__name__)

REPLICA_WAIT_MS = 500
REFRESH_SECONDS = 5.0


class Replicas:
    """The masters with a replica, as the cluster client's slot map says."""

    def __init__(self, client: aioredis.RedisCluster) -> None:
        self.client = client
        self._map: object = None  # the slot map ``_masters`` was read from
        self._masters: list[Any] = []
        self._refreshed = 0.0

    def masters(self) -> list[Any]:
        """The client's nodes that serve slots and have a replica; read again after the
        client refreshed its slot map (a failover, a migration)."""
        slots = self.client.nodes_manager.slots_cache
        if slots is not self._map:
            found = {nodes[0].name: nodes[0] for nodes in slots.values() if len(nodes) > 1}
            self._map, self._masters = slots, list(found.values())
        return self._masters

    def wait(self, pipe: Any) -> int:
        """Add a WAIT for every master with a replica to ``pipe``; how many were added."""
        masters = self.masters()
        for node in masters:
            pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS, target_nodes=node)
        return len(masters)

    async def count(self, replies: list[Any]) -> None:
        """Count the masters that answered without a replica holding their writes, and
        read the slot map again if one did."""
        short = sum(1 for reply in replies if isinstance(reply, int) and reply < 1)
        if not short:
            return
        metrics.REDIS_UNREPLICATED.inc(short)
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_SECONDS:
            self._refreshed = now
            try:
                await self.client.nodes_manager.initialize()
            except RedisError:  # the next write's errors say more; it asks again
                log.warning("could not read the cluster's slot map again", exc_info=True)
