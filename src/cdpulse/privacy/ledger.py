"""The erasure ledger: which ids were erased, so that replaying old events cannot bring
a customer back.

It holds pseudonyms (``Pseudonymizer.of_id``), never the ids: the ledger itself must
not be a list of the people who asked to be forgotten. An erased id stays erased: its
later events are dropped and counted, and a returning customer gets a new id.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis

from cdpulse.privacy.pseudonyms import Pseudonymizer


class Ledger(Protocol):
    """Remembers erased ids."""

    async def erased(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` that were erased."""
        ...

    async def record(self, ids: list[str], at: int) -> None:
        """Remember ``ids`` as erased at ``at`` (epoch ms)."""
        ...


class RedisLedger:
    """The ledger as one Redis hash: pseudonym -> erasure time."""

    def __init__(self, client: aioredis.Redis, key: str, pseudonyms: Pseudonymizer) -> None:
        self.client = client
        self.key = key
        self.pseudonyms = pseudonyms

    async def erased(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        found = await self.client.hmget(self.key, [self.pseudonyms.of_id(i) for i in ids])
        return {i for i, at in zip(ids, found, strict=True) if at is not None}

    async def record(self, ids: list[str], at: int) -> None:
        if ids:
            # NX semantics per field: the first erasure time is the one kept.
            pipe = self.client.pipeline(transaction=False)
            for profile_id in ids:
                pipe.hsetnx(self.key, self.pseudonyms.of_id(profile_id), at)
            await pipe.execute()


class MemoryLedger:
    """The ledger in a dict: for unit tests and in-process replays."""

    def __init__(self, pseudonyms: Pseudonymizer) -> None:
        self.pseudonyms = pseudonyms
        self.entries: dict[str, int] = {}

    async def erased(self, ids: list[str]) -> set[str]:
        return {i for i in ids if self.pseudonyms.of_id(i) in self.entries}

    async def record(self, ids: list[str], at: int) -> None:
        for profile_id in ids:
            self.entries.setdefault(self.pseudonyms.of_id(profile_id), at)
