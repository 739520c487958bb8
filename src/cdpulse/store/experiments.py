"""Experiment exposures and conversions in Redis, each customer counted once.

An experiment's hashes are a customer's shard's (``Keys.shard``): on one Redis one set
under the experiment's own hash tag, on a Redis Cluster one per shard, on the slot of
its customers' keys, so the count-once script and the worker's save that converts a
customer each stay on one slot; the counts are summed over the shards.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cdpulse.connections import AsyncRedis
from cdpulse.experiments.sequential import Arm
from cdpulse.store.keys import keys_for
from cdpulse.store.redis import script


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisExperimentStore:
    """Who was exposed to which variant when, who converted, and the counts."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self._once = client.register_script(script("count_once.lua"))

    def _key(self, experiment: str, part: str, customer_id: str) -> str:
        return self.keys.shard(customer_id).experiment(experiment, part)

    async def expose(
        self, experiment: str, customer_id: str, variant: str, at_ms: int
    ) -> tuple[str, int, bool]:
        """Record the first exposure; returns (variant, exposed at, whether it is new)."""
        # The customer's own record of it first (a slot of its own, so not in the script):
        # should the exposure follow, erasure finds it; should it not, nothing is lost.
        await self.client.sadd(self.keys.experiments_of(customer_id), experiment)
        new, stored = await self._once(
            keys=[
                self._key(experiment, "exposed", customer_id),
                self._key(experiment, "counts", customer_id),
            ],
            args=[customer_id, f"{variant}|{at_ms}", f"exposures:{variant}"],
        )
        name, at = _text(stored).split("|")
        return name, int(at), bool(new)

    async def exposures(self, experiment: str, ids: list[str]) -> dict[str, tuple[str, int]]:
        """customer -> (variant, exposed at) for those of ``ids`` who were exposed."""
        if not ids:
            return {}
        by_key: dict[str, list[str]] = defaultdict(list)
        for customer_id in ids:
            by_key[self._key(experiment, "exposed", customer_id)].append(customer_id)
        pipe = self.client.pipeline(transaction=False)
        for key, group in by_key.items():
            pipe.hmget(key, group)
        out = {}
        for group, values in zip(by_key.values(), await pipe.execute(), strict=True):
            for customer_id, value in zip(group, values, strict=True):
                if value is not None:
                    name, at = _text(value).split("|")
                    out[customer_id] = (name, int(at))
        return out

    async def convert(self, experiment: str, conversions: dict[str, str]) -> int:
        """Count each customer's conversion once; returns how many were new."""
        new = 0
        for customer_id, variant in conversions.items():
            recorded, _ = await self._once(
                keys=[
                    self._key(experiment, "converted", customer_id),
                    self._key(experiment, "counts", customer_id),
                ],
                args=[customer_id, variant, f"conversions:{variant}"],
            )
            new += int(recorded)
        return new

    async def arms(self, experiment: str, variants: list[str]) -> dict[str, Arm]:
        pipe = self.client.pipeline(transaction=False)
        for shard in self.keys.shards():
            pipe.hgetall(shard.experiment(experiment, "counts"))
        counts: dict[str, int] = defaultdict(int)
        for raw in await pipe.execute():
            for k, v in raw.items():
                counts[_text(k)] += int(v)
        return {
            v: Arm(counts.get(f"exposures:{v}", 0), counts.get(f"conversions:{v}", 0))
            for v in variants
        }
