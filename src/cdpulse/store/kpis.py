"""The KPI counters in Redis: their key names (here only) and the reads the api makes.

One hash per period under ``{prefix}:kpis:``: ``day:YYYY-MM-DD``, ``week:YYYY-MM-DD``
(its Monday) and ``cohort:YYYY-MM-DD`` (the Monday of the cohort's first-order week);
the fields are ``cdpulse.kpis.fields``'. They are not any customer's, so they carry no
hash tag. ``write.lua`` adds to them with the saves that count them (``kpi`` operation);
a hash holding ``FIELDS_CAP`` fields takes no new one (a client naming a new campaign or
offer on every event must not grow it without end; one script call may pass the mark by
the new fields of its chunk) and counts what it refused in ``_refused``.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from cdpulse.kpis.fields import COHORT, DAY, PERIODS, REFUSED, WEEK, period_name
from cdpulse.store.keys import glob_escape

FIELDS_CAP = 20_000

__all__ = ["COHORT", "DAY", "FIELDS_CAP", "REFUSED", "WEEK", "RedisKpis", "kpi_key"]


def kpi_key(prefix: str, period: str) -> str:
    """The hash of one period (``period_name``'s text)."""
    return f"{prefix}:kpis:{period}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisKpis:
    """Reads the KPI counters of periods in one round trip."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def all(self, kind: int) -> dict[str, dict[str, int]]:
        """Every period of ``kind`` counted so far, by name (``day:2026-01-05``), in
        order: one SCAN of the KPI keys and one pipelined read."""
        prefix = kpi_key(self.prefix, "")
        pattern = glob_escape(prefix) + glob_escape(PERIODS[kind]) + ":*"
        names = sorted(
            [_text(key).removeprefix(prefix) async for key in self.client.scan_iter(pattern, 500)]
        )
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(kpi_key(self.prefix, name))
        replies = await pipe.execute() if names else []
        return {
            name: {_text(k): int(v) for k, v in reply.items()}
            for name, reply in zip(names, replies, strict=True)
            if reply
        }

    async def read(self, kind: int, days: Sequence[int]) -> dict[int, dict[str, int]]:
        """The counters of the periods of ``kind`` starting on each epoch day of ``days``
        (empty for a period nothing counted)."""
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(kpi_key(self.prefix, period_name(kind, day)))
        replies = await pipe.execute()
        return {
            day: {_text(k): int(v) for k, v in reply.items()}
            for day, reply in zip(days, replies, strict=True)
        }
