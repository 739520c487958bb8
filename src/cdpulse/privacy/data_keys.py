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
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.privacy.pseudonyms import PREFIX as PSEUDONYM
from cdpulse.privacy.traits import TraitPolicy

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


class KeyChain(Protocol):
    """Where the customers' data keys live (``store.data_keys.DataKeys``)."""

    async def get_or_create(self, customer_id: str) -> bytes: ...


SEALED_SUFFIX = "_sealed"
MAX_TRAIT = 512  # the contract's longest trait value


async def protect_traits(
    event: dict[str, Any], policy: TraitPolicy, data_keys: KeyChain
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
