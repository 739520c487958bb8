"""Trigger bookkeeping in Redis: when each customer's watch is next due, and uplift counts.

The watch itself lives in the profile (saved with it); here are only the index of due
times (a sorted set, like the churn schedule) and per-rule outcome counters.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.store.keys import Keys
from cdpulse.store.redis import script

UPLIFT_FIELDS = ("treated", "treated_converted", "holdout", "holdout_converted")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisTriggerStore:
    """The trigger schedule and uplift counters under one prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self._move = client.register_script(script("trigger_due.lua"))

    async def schedule(self, dues: dict[str, int]) -> None:
        if dues:
            await self.client.zadd(self.keys.trigger_due, dict(dues.items()))

    async def due(self, until: int, limit: int) -> dict[str, int]:
        rows = await self.client.zrangebyscore(
            self.keys.trigger_due, "-inf", until, 0, limit, withscores=True
        )
        out: dict[str, int] = {}
        for row in rows:
            if isinstance(row, tuple | list):  # withscores: (member, score)
                out[_text(row[0])] = int(row[1])
        return out

    async def move(self, moves: dict[str, tuple[int, int | None]]) -> None:
        if moves:
            args: list[str | int] = []
            for profile_id, (read, new) in moves.items():
                args += [profile_id, read, "" if new is None else new]
            await self._move(keys=[self.keys.trigger_due], args=args)

    async def claim(self, fired: list[tuple[str, str]], ttl_seconds: int) -> set[str]:
        """Claim ``(customer, trigger id)`` pairs for publishing; returns the ids claimed now.

        SET NX per id: an id decided again after a crash (same situation, same id) is
        claimed already and not published twice.
        """
        if not fired:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for customer, trigger in fired:
            pipe.set(self.keys.fired(customer, trigger), 1, nx=True, ex=ttl_seconds)
        claimed = await pipe.execute()
        return {trigger for (_, trigger), new in zip(fired, claimed, strict=True) if new}

    async def count(self, counts: dict[tuple[str, str], int]) -> None:
        """Add ``(rule, field) -> n`` to the uplift counters."""
        if not counts:
            return
        pipe = self.client.pipeline(transaction=False)
        for (rule, name), n in counts.items():
            pipe.hincrby(self.keys.uplift(rule), name, n)
        await pipe.execute()

    async def counts(self, rule: str) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.uplift(rule))
        values = {_text(k): int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in UPLIFT_FIELDS}


class MemoryTriggerStore:
    """The same in dicts: unit tests and in-process replays."""

    def __init__(self) -> None:
        self.dues: dict[str, int] = {}
        self.uplift: dict[tuple[str, str], int] = {}
        self.claimed: set[str] = set()

    async def claim(self, fired: list[tuple[str, str]], ttl_seconds: int) -> set[str]:
        fresh = {trigger for _, trigger in fired} - self.claimed
        self.claimed |= fresh
        return fresh

    async def schedule(self, dues: dict[str, int]) -> None:
        self.dues.update(dues)

    async def due(self, until: int, limit: int) -> dict[str, int]:
        ready = sorted((t, i) for i, t in self.dues.items() if t <= until)
        return {i: t for t, i in ready[:limit]}

    async def move(self, moves: dict[str, tuple[int, int | None]]) -> None:
        for profile_id, (read, new) in moves.items():
            if self.dues.get(profile_id) != read:
                continue  # moved meanwhile: the newer due time stands
            if new is None:
                del self.dues[profile_id]
            else:
                self.dues[profile_id] = new

    async def count(self, counts: dict[tuple[str, str], int]) -> None:
        for key, n in counts.items():
            self.uplift[key] = self.uplift.get(key, 0) + n

    async def counts(self, rule: str) -> dict[str, int]:
        return {name: self.uplift.get((rule, name), 0) for name in UPLIFT_FIELDS}
