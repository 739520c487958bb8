"""The erasure ledger in Redis: one hash, pseudonym of an erased id -> when it was erased
(``privacy.ledger``). Its copy in Kafka is loaded into it by ``ingest.ledger``."""

from __future__ import annotations

from collections.abc import Iterable

from cdpulse.connections import AsyncRedis
from cdpulse.privacy.pseudonyms import Pseudonymizer

CHUNK = 1000  # entries per pipelined round trip when restoring


class RedisLedger:
    """The ledger as one Redis hash: pseudonym -> erasure time."""

    def __init__(self, client: AsyncRedis, key: str, pseudonyms: Pseudonymizer) -> None:
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

    async def restore(self, entries: Iterable[tuple[str, int]]) -> None:
        """Add ``(pseudonym, erased at)`` entries, as the ledger's topic holds them; an
        entry the hash has already keeps its time."""
        pipe = self.client.pipeline(transaction=False)
        for n, (pseudonym, at) in enumerate(entries, 1):
            pipe.hsetnx(self.key, pseudonym, at)
            if n % CHUNK == 0:
                await pipe.execute()
        await pipe.execute()
