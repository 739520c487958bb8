"""The customers' data keys in Redis (crypto-shredding, ``privacy.data_keys``)."""

from __future__ import annotations

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.store.keys import Keys


class DataKeys:
    """Per-customer AES-256 keys under ``{prefix}:{customer}:datakey``."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_seconds: int = 0) -> None:
        self.client = client
        self.keys = Keys(prefix)
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

    async def get(self, customer_id: str) -> bytes | None:
        """The customer's key, None once it was erased (shredded) or never made."""
        stored = await self.client.get(self.keys.data_key(customer_id))
        return stored if isinstance(stored, bytes) else None
