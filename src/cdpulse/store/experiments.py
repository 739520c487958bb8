"""Experiment exposures and conversions in Redis, each customer counted once.

Keys share the experiment's hash tag ``{experiment:name}`` so the count-once script
stays on one Redis Cluster slot.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from cdpulse.experiments.sequential import Arm
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisExperimentStore:
    """Who was exposed to which variant when, who converted, and the counts."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._once = client.register_script(script("count_once.lua"))

    def _key(self, experiment: str, part: str) -> str:
        return f"{self.prefix}:{{experiment:{experiment}}}:{part}"

    async def expose(
        self, experiment: str, customer_id: str, variant: str, at_ms: int
    ) -> tuple[str, int, bool]:
        """Record the first exposure; returns (variant, exposed at, whether it is new)."""
        # The customer's own record of it first (a slot of its own, so not in the script):
        # should the exposure follow, erasure finds it; should it not, nothing is lost.
        await self.client.sadd(Keys(self.prefix).experiments_of(customer_id), experiment)
        new, stored = await self._once(
            keys=[self._key(experiment, "exposed"), self._key(experiment, "counts")],
            args=[customer_id, f"{variant}|{at_ms}", f"exposures:{variant}"],
        )
        name, at = _text(stored).split("|")
        return name, int(at), bool(new)

    async def exposures(self, experiment: str, ids: list[str]) -> dict[str, tuple[str, int]]:
        """customer -> (variant, exposed at) for those of ``ids`` who were exposed."""
        if not ids:
            return {}
        values = await self.client.hmget(self._key(experiment, "exposed"), ids)
        out = {}
        for customer_id, value in zip(ids, values, strict=True):
            if value is not None:
                name, at = _text(value).split("|")
                out[customer_id] = (name, int(at))
        return out

    async def convert(self, experiment: str, conversions: dict[str, str]) -> int:
        """Count each customer's conversion once; returns how many were new."""
        new = 0
        for customer_id, variant in conversions.items():
            recorded, _ = await self._once(
                keys=[self._key(experiment, "converted"), self._key(experiment, "counts")],
                args=[customer_id, variant, f"conversions:{variant}"],
            )
            new += int(recorded)
        return new

    async def arms(self, experiment: str, variants: list[str]) -> dict[str, Arm]:
        raw = await self.client.hgetall(self._key(experiment, "counts"))
        counts = {_text(k): int(v) for k, v in raw.items()}
        return {
            v: Arm(counts.get(f"exposures:{v}", 0), counts.get(f"conversions:{v}", 0))
            for v in variants
        }
