"""Crypto-shredding: personal values that must travel inside events are sealed with a
per-customer data key kept in Redis; erasing the key makes every copy unreadable,
including those in Kafka's history, which cdpulse cannot rewrite.

Sealing is AES-256-GCM from ``cryptography`` (authenticated: a tampered value fails to
open rather than decrypting to garbage), with a random 96-bit nonce per value and the
customer id as associated data, so a value sealed for one customer cannot be passed off
as another's. A sealed value reads ``sealed:v1:<urlsafe base64 of nonce + ciphertext>``.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.privacy.pseudonyms import PREFIX as PSEUDONYM
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.store.keys import Keys

PREFIX = "sealed:v1:"
_NONCE = 12


def seal(key: bytes, customer_id: str, plaintext: str) -> str:
    """``plaintext`` sealed under ``key`` for ``customer_id``."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), customer_id.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(key: bytes, customer_id: str, value: str) -> str | None:
    """The plaintext of a sealed value; None when it is not one or does not open."""
    if not value.startswith(PREFIX):
        return None
    try:
        blob = base64.urlsafe_b64decode(value.removeprefix(PREFIX))
        plain = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], customer_id.encode())
    except (InvalidTag, ValueError, binascii.Error):
        return None
    return plain.decode()


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


SEALED_SUFFIX = "_sealed"
MAX_TRAIT = 512  # the contract's longest trait value


async def protect_traits(
    event: dict[str, Any], policy: TraitPolicy, data_keys: DataKeys
) -> dict[str, Any]:
    """An identify event fit for Kafka: each personal trait becomes its pseudonym, and
    travels sealed beside it (``email_sealed``) for consumers allowed to read it."""
    traits = dict(event.get("properties", {}).get("traits", {}))
    customer_id = event["customer_id"]
    personal = [n for n in traits if n in policy.personal and isinstance(traits[n], str)]
    if not personal:
        return event
    key = await data_keys.get_or_create(customer_id)
    for name in personal:
        value = traits[name]
        if value.startswith(PSEUDONYM):
            continue
        traits[name] = policy.pseudonymizer.pseudonym(name, value)
        sealed = seal(key, customer_id, value)
        if len(sealed) <= MAX_TRAIT:  # a longer one travels as its pseudonym only
            traits[name + SEALED_SUFFIX] = sealed
    return {**event, "properties": {**event["properties"], "traits": traits}}
