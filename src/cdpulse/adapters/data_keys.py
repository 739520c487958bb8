"""The customers' data keys for a blocking client: what ``Producer`` seals personal traits
with, the same keys the collector uses (``store.data_keys.DataKeys``, async)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.connections import BlockingRedis, blocking_redis, redis_options
from cdpulse.settings import Settings
from cdpulse.store.keys import keys_for


class BlockingDataKeys:
    """Per-customer AES-256 keys under ``{prefix}:{customer}:datakey``, read and created
    with a synchronous Redis client (the producer has no event loop)."""

    def __init__(self, client: BlockingRedis, prefix: str, ttl_seconds: int = 0) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self.ttl_seconds = ttl_seconds  # 0: kept until erased

    @classmethod
    def from_settings(cls, settings: Settings) -> BlockingDataKeys:
        client = blocking_redis(settings.redis_url, **redis_options(settings))
        # Kept as long as the api keeps the keys it creates (app/api.py).
        ttl = int(settings.profile_retention_days * 86400)
        return cls(client, settings.redis_prefix, ttl)

    def get_or_create(self, customer_id: str) -> bytes:
        """The customer's key, created on first use. One SET NX GET: racing creators (the
        collector, other producers) agree on whichever key was set first."""
        fresh = AESGCM.generate_key(bit_length=256)
        key = self.keys.data_key(customer_id)
        before = self.client.set(key, fresh, nx=True, get=True, ex=self.ttl_seconds or None)
        return before if isinstance(before, bytes) else fresh

    def unless_erased(self, customer_id: str, pseudonym: str) -> bytes | None:
        """The customer's key, or None once erased (``store.data_keys.DataKeys.
        unless_erased``: made first, then checked against the erasure ledger)."""
        key = self.get_or_create(customer_id)
        if self.client.hget(self.keys.erasure_ledger, pseudonym) is not None:
            self.client.delete(self.keys.data_key(customer_id))
            return None
        return key

    def close(self) -> None:
        self.client.close()
