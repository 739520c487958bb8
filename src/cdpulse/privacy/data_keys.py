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
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdpulse.privacy.pseudonyms import canonical, is_pseudonym
from cdpulse.privacy.traits import TraitPolicy

PREFIX = "sealed:v1:"
_NONCE = 12


def seal(key: bytes, customer_id: str, plaintext: str) -> str:
    """``plaintext`` sealed under ``key`` for ``customer_id``."""
    nonce = os.urandom(_NONCE)
    data = plaintext.encode("utf-8", "surrogatepass")  # a lone surrogate seals, not raises
    sealed = AESGCM(key).encrypt(nonce, data, customer_id.encode("utf-8", "surrogatepass"))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(key: bytes, customer_id: str, value: str) -> str | None:
    """The plaintext of a sealed value; None when it is not one or does not open."""
    if not value.startswith(PREFIX):
        return None
    try:
        blob = base64.urlsafe_b64decode(value.removeprefix(PREFIX))
        plain = AESGCM(key).decrypt(
            blob[:_NONCE], blob[_NONCE:], customer_id.encode("utf-8", "surrogatepass")
        )
    except (InvalidTag, ValueError, binascii.Error):
        return None
    return plain.decode("utf-8", "surrogatepass")


SEALED_SUFFIX = "_sealed"
# The contract's limits (contract/events.py: Identify, Id, TraitValue), which this layer
# may not import: a protected event must still pass the worker's validation.
MAX_TRAIT = 512  # characters of a trait value
MAX_NAME = 128  # characters of a trait name
MAX_TRAITS = 100  # traits in one identify event


def _traits(event: Mapping[str, Any]) -> dict[str, Any]:
    properties = event.get("properties")
    traits = properties.get("traits") if isinstance(properties, Mapping) else None
    return dict(traits) if isinstance(traits, Mapping) else {}


def _guarded(name: str, personal: frozenset[str]) -> bool:
    """A personal trait, or the sealed copy of one (``email_sealed``)."""
    return name in personal or (
        name.endswith(SEALED_SUFFIX) and name.removesuffix(SEALED_SUFFIX) in personal
    )


def sealing_customer(event: Mapping[str, Any], policy: TraitPolicy) -> str | None:
    """The customer whose data key ``protect_traits`` needs for ``event``; None when the
    event carries no personal trait (nor a sealed copy of one) and goes to Kafka as it is.

    Raises ValueError when personal traits come without a customer id to seal them for
    (the contract refuses such an identify event before it gets here)."""
    if not any(
        _guarded(name, policy.personal) and value is not None
        for name, value in _traits(event).items()
    ):
        return None
    customer_id = event.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError(
            f"event {event.get('event_id')!r} carries personal traits but no customer_id "
            "to seal them for; identify needs a customer_id"
        )
    return customer_id


def protect_traits(
    event: Mapping[str, Any], policy: TraitPolicy, key: bytes | None
) -> dict[str, Any]:
    """``event`` fit for Kafka, the one rule the collector and ``Producer`` both follow.

    Each personal trait, of any JSON type (its ``canonical`` text), becomes its pseudonym
    and travels sealed beside it (``email_sealed``) under the customer's data ``key`` for
    consumers allowed to read it; a sealed copy longer than a trait may be, or one that
    would make the event break the contract's limits, is left out (the pseudonym alone
    travels). A ``<personal>_sealed`` trait the client sent is kept only when it opens
    under this customer's key: anything else in that name could be a value in clear.
    Other traits pass unchanged. ``key`` is the data key of ``sealing_customer(event)``;
    None when that customer was erased: the pseudonyms travel alone (the worker drops an
    erased customer's events), and no key is made again for them.
    """
    customer_id = sealing_customer(event, policy)
    if customer_id is None:
        return dict(event)
    traits = _traits(event)
    for name in [n for n in traits if n.endswith(SEALED_SUFFIX) and _guarded(n, policy.personal)]:
        value = traits[name]
        if key is None or not isinstance(value, str) or unseal(key, customer_id, value) is None:
            del traits[name]
    for name in [n for n in traits if n in policy.personal]:
        value = traits[name]
        if value is None or is_pseudonym(value):
            continue
        traits[name] = policy.pseudonym(name, value)
        if key is None:
            continue
        sealed_name, sealed = name + SEALED_SUFFIX, seal(key, customer_id, canonical(value))
        room = sealed_name in traits or len(traits) < MAX_TRAITS
        if len(sealed) <= MAX_TRAIT and len(sealed_name) <= MAX_NAME and room:
            traits[sealed_name] = sealed
        else:
            traits.pop(sealed_name, None)  # a copy that opens, but of an older value
    return {**event, "properties": {**event["properties"], "traits": traits}}
