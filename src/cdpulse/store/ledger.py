"""The erasure ledger in Redis: one hash, pseudonym of an erased id -> when it was erased
(``privacy.ledger``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.privacy.pseudonyms import Pseudonymizer


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
