"""The customers' data keys in Redis (crypto-shredding, ``privacy.data_keys``)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.connections import AsyncRedis
from cdpulse.store.keys import keys_for


class DataKeys:
    """Per-customer AES-256 keys under ``{prefix}:{customer}:datakey``."""

    def __init__(self, client: AsyncRedis, prefix: str, ttl_seconds: int = 0) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self.ttl_seconds = ttl_seconds  # 0: kept until erased

    async def get_or_create(self, customer_id: str) -> bytes:
        """The customer's key, created on first use (SET NX: racing creators agree)."""
        key = self.keys.data_key(customer_id)
        fresh = AESGCM.generate_key(bit_length=256)
        await self.client.set(key, fresh, nx=True, ex=self.ttl_seconds or None)
        stored = await self.client.get(key)
        if not isinstance(stored, bytes):
            raise RuntimeError(f"data key of {key!r} vanished while it was created; retry")
        return stored

    async def unless_erased(self, customer_id: str, pseudonym: str) -> bytes | None:
        """The customer's key (made on first use), or None when the erasure ledger holds
        ``pseudonym`` (``of_id(customer_id)``): a key made for an erased customer would
        open whatever is sealed with it after the erasure shredded the last one.

        Made first, then checked: the eraser records the ledger before it deletes keys,
        so an erasure between the two deletes this key itself, and one before is seen here.
        """
        key = await self.get_or_create(customer_id)
        if await self.client.hget(self.keys.erasure_ledger, pseudonym) is not None:
            await self.client.delete(self.keys.data_key(customer_id))
            return None
        return key

    async def get(self, customer_id: str) -> bytes | None:
        """The customer's key, None once it was erased (shredded) or never made."""
        stored = await self.client.get(self.keys.data_key(customer_id))
        return stored if isinstance(stored, bytes) else None
