"""The identity index in Redis: a personal trait's pseudonym -> the customer who gave it
last (``privacy.identities``). Keys live under the pseudonym's hash tag
(``{prefix}:{hmac:…}:identity``). The worker's write (``write.lua``) sets an entry and
adds its pseudonym to the customer's set (``Keys.identities``) in one script call, so
erasure finds every entry of a customer, earlier emails too, without a scan."""

from __future__ import annotations

import redis.asyncio as aioredis

from cdpulse.store.keys import Keys


class IdentityIndex:
    """Pseudonym -> customer id, in Redis (read side: the worker writes it)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def find(self, pseudonym: str) -> str | None:
        found = await self.client.get(self.keys.identity(pseudonym))
        return found.decode() if isinstance(found, bytes) else None
