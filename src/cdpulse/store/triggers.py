"""Trigger outcome counters in Redis: each rule's treated and holdout firings and their
conversions (the uplift view reads them; the pipeline's save counts each claim once).

The watch itself lives in the profile, and its due time in the sharded schedules the
pipeline's state store keeps (``store/state.py``).
"""

from __future__ import annotations

from cdpulse.connections import AsyncRedis
from cdpulse.store.keys import keys_for

UPLIFT_FIELDS = ("treated", "treated_converted", "holdout", "holdout_converted")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisTriggerStore:
    """A rule's uplift counters under one prefix (a hash per shard on a Redis Cluster,
    counted with each customer's save)."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)

    async def counts(self, rule: str) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for shard in self.keys.shards():
            pipe.hgetall(shard.uplift(rule))
        values: dict[str, int] = dict.fromkeys(UPLIFT_FIELDS, 0)
        for raw in await pipe.execute():
            for k, v in raw.items():
                name = _text(k)
                if name in values:
                    values[name] += int(v)
        return values
