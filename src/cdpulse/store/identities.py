"""The identity index in Redis: a personal trait's pseudonym -> the customer who gave it
last (``privacy.identities``), under the pseudonym's own key (``Keys.identity``). The
worker's write (``write.lua``) sets an entry and adds its pseudonym to the customer's set
(``Keys.identities``) in one script call (on a Redis Cluster in the same round trip,
``store/links.py``), so erasure finds every entry of a customer, earlier emails too,
without a scan."""

from __future__ import annotations

from cdpulse.connections import AsyncRedis
from cdpulse.store.keys import keys_for


class IdentityIndex:
    """Pseudonym -> customer id, in Redis (read side: the worker writes it)."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)

    async def find(self, pseudonym: str) -> str | None:
        found = await self.client.get(self.keys.identity(pseudonym))
        return found.decode() if isinstance(found, bytes) else None
