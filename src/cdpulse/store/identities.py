"""The identity index in Redis: a personal trait's pseudonym -> the customer who gave it
last (``privacy.identities``), under the pseudonym's own key (``Keys.identity``). The
worker's write (``write.lua``) sets an entry and adds its pseudonym to the customer's set
(``Keys.identities``) in one script call (on a Redis Cluster in the same round trip,
``store/links.py``), so erasure finds every entry of a customer, earlier emails too,
without a scan.

In the customer's hash a pseudonym is stored without its ``hmac:``: its 64 hex digits
are as long as a field of a listpack hash may be (Redis' ``hash-max-listpack-value``);
with it, every customer's hash was a hash table, ~150 bytes more. ``write.lua`` drops
it (and rewrites a hash or set an earlier version wrote in full); ``pseudonym`` puts
it back.

>>> pseudonym(b"0" * 64)[:9], pseudonym(b"hmac:" + b"0" * 64)[:9], pseudonym(b"p-old")
('hmac:0000', 'hmac:0000', 'p-old')
"""

from __future__ import annotations

import re

from cdpulse.connections import AsyncRedis
from cdpulse.privacy.pseudonyms import PREFIX
from cdpulse.store.keys import keys_for

_DIGITS = re.compile(r"[0-9a-f]{64}\Z")


def pseudonym(field: bytes | str) -> str:
    """The pseudonym a field of a customer's identities hash stands for: its digits, or a
    whole pseudonym an earlier version wrote."""
    text = field.decode("utf-8") if isinstance(field, bytes) else field
    return PREFIX + text if _DIGITS.match(text) else text


class IdentityIndex:
    """Pseudonym -> customer id, in Redis (read side: the worker writes it)."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)

    async def find(self, pseudonym: str) -> str | None:
        found = await self.client.get(self.keys.identity(pseudonym))
        return found.decode() if isinstance(found, bytes) else None
