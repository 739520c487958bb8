"""Trigger outcome counters in Redis: each rule's treated and holdout firings and their
conversions (the uplift view reads them; the pipeline's save counts each claim once).

The watch itself lives in the profile, and its due time in the sharded schedules the
pipeline's state store keeps (``store/state.py``).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.store.keys import Keys

UPLIFT_FIELDS = ("treated", "treated_converted", "holdout", "holdout_converted")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisTriggerStore:
    """A rule's uplift counters under one prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def counts(self, rule: str) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.uplift(rule))
        values = {_text(k): int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in UPLIFT_FIELDS}
