"""The input-health flags in Redis: the hours each model's inputs were found broken in,
and how far each input partition is judged.

Every worker judges the hours of its own partitions (``monitors/health.py``), adds its
flags with HSETNX (the first reason found for a hour stays; a flag is never taken back),
then raises its partitions' judged marks (the watermarks' raise-only script). A hour
every mark has passed gets no new flag (``InputQuality.sync`` drops them), so a replayed
batch reads the flags its first attempt read (README: Triggers, Gating).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cdpulse.connections import AsyncRedis
from cdpulse.monitors.health import Gate
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script

_RAISE = script("watermark.lua")  # a hash of numbers that are only ever raised


class RedisGateStore:
    """The flags of the models under one prefix."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def flag(self, new: Mapping[str, Mapping[int, str]]) -> None:
        """Add flags: by model, hour -> reason (a hour already flagged keeps its reason)."""
        if not any(new.values()):
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for model, hours in new.items():
                for hour, reason in sorted(hours.items()):
                    pipe.hsetnx(self.keys.input_gate(model), str(hour), reason)
            await pipe.execute()

    async def judged(self, partitions: Iterable[int], hour: int) -> None:
        """Mark ``partitions`` judged through ``hour`` (a lower mark stays)."""
        args = [str(value) for p in sorted(partitions) for value in (p, hour)]
        if args:
            await self.client.eval(_RAISE, 1, self.keys.input_gate_judged, *args)

    async def gate(self, models: Iterable[str], partitions: int) -> Gate:
        """Every flag of ``models``, and the hour all ``partitions`` are judged through."""
        names = sorted(models)
        async with self.client.pipeline(transaction=False) as pipe:
            for model in names:
                pipe.hgetall(self.keys.input_gate(model))
            pipe.hgetall(self.keys.input_gate_judged)
            *found, marks = await pipe.execute()
        judged = {int(p): int(hour) for p, hour in marks.items()}
        return Gate(
            {
                model: {int(hour): _text(reason) for hour, reason in hours.items()}
                for model, hours in zip(names, found, strict=True)
            },
            settled=min(judged.get(p, -1) for p in range(partitions)) if partitions else None,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
