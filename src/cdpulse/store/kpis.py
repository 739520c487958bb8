"""The KPI counters in Redis: their key names (here only) and the reads the api makes.

One hash per period under ``{prefix}:kpis:``: ``day:YYYY-MM-DD``, ``week:YYYY-MM-DD``
(its Monday) and ``cohort:YYYY-MM-DD`` (the Monday of the cohort's first-order week);
the fields are ``cdpulse.kpis.fields``'. They are not any customer's, so on one Redis
they carry no hash tag; on a Redis Cluster each shard has its own under its base
(``{prefix}:{<tag>}:kpis:…``, ``store/keys.py``), on the slot of the customers whose saves
count them, and the reads here sum the shards. ``write.lua`` adds to them with the saves
that count them (``kpi`` operation);
a hash holding ``FIELDS_CAP`` fields takes no new one (a client naming a new campaign or
offer on every event must not grow it without end; one script call may pass the mark by
the new fields of its chunk; on a cluster, each shard's hash) and counts what it refused
in ``_refused``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cdpulse.connections import AsyncRedis
from cdpulse.kpis.fields import COHORT, DAY, PERIODS, REFUSED, WEEK, period_name
from cdpulse.store.keys import glob_escape, keys_for

FIELDS_CAP = 20_000

__all__ = ["COHORT", "DAY", "FIELDS_CAP", "REFUSED", "WEEK", "RedisKpis", "kpi_key"]


def kpi_key(base: str, period: str) -> str:
    """The hash of one period (``period_name``'s text) under ``base``: the prefix on one
    Redis, a shard's base on a Redis Cluster (``Shard.base``)."""
    return f"{base}:kpis:{period}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisKpis:
    """Reads the KPI counters of periods in one round trip."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)

    async def all(self, kind: int) -> dict[str, dict[str, int]]:
        """Every period of ``kind`` counted so far, by name (``day:2026-01-05``), in
        order: one SCAN of the KPI keys and one pipelined read."""
        pattern = self.keys.shared_pattern(f"kpis:{glob_escape(PERIODS[kind])}:*")
        found = [_text(key) async for key in self.client.scan_iter(pattern, 500)]
        names = sorted({self.keys.after_shard(key).removeprefix("kpis:") for key in found})
        counted = await self._sum(names)
        return {name: counts for name, counts in counted.items() if counts}

    async def read(self, kind: int, days: Sequence[int]) -> dict[int, dict[str, int]]:
        """The counters of the periods of ``kind`` starting on each epoch day of ``days``
        (empty for a period nothing counted)."""
        counted = await self._sum([period_name(kind, day) for day in days])
        return {day: counted[period_name(kind, day)] for day in days}

    async def _sum(self, periods: list[str]) -> dict[str, dict[str, int]]:
        """Each period's counters, summed over the shards (one on one Redis)."""
        shards = self.keys.shards()
        pipe = self.client.pipeline(transaction=False)
        for period in periods:
            for shard in shards:
                pipe.hgetall(kpi_key(shard.base, period))
        replies = iter(await pipe.execute() if periods else [])
        out: dict[str, dict[str, int]] = {}
        for period in periods:
            counts: Counter[str] = Counter()
            for _ in shards:
                counts.update({_text(k): int(v) for k, v in next(replies).items()})
            out[period] = dict(counts)
        return out
