"""The identity index in Redis: a personal trait's pseudonym -> the customer who gave it
last (``privacy.identities``). Keys live under the pseudonym's hash tag
(``{prefix}:{hmac:…}:identity``); erasure removes the customer's entries."""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.privacy.identities import pseudonyms_of
from cdpulse.profile.model import Profile
from cdpulse.store.keys import Keys


class IdentityIndex:
    """Pseudonym -> customer id, in Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, retention_ms: int = 0) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.retention_ms = retention_ms

    async def index(self, profiles: list[Profile], personal: frozenset[str]) -> None:
        """Point the pseudonyms of identified ``profiles`` at their customers."""
        pipe = self.client.pipeline(transaction=False)
        for profile in profiles:
            if profile.customer_id is None:
                continue
            for pseudonym in pseudonyms_of(profile.traits, personal):
                pipe.set(self.keys.identity(pseudonym), profile.id, px=self.retention_ms or None)
        if pipe:
            await pipe.execute()

    async def find(self, pseudonym: str) -> str | None:
        found = await self.client.get(self.keys.identity(pseudonym))
        return found.decode() if isinstance(found, bytes) else None

    async def forget(self, profile: Profile, personal: frozenset[str]) -> int:
        """Remove the entries that point at ``profile``; how many were removed."""
        removed = 0
        for pseudonym in pseudonyms_of(profile.traits, personal):
            key = self.keys.identity(pseudonym)
            if await self.client.get(key) == profile.id.encode():
                removed += int(await self.client.delete(key))
        return removed
