"""Keyed pseudonyms: a personal value (an email, a phone number) becomes an HMAC-SHA256.

The same value under the same key always gives the same pseudonym, so profiles can be
matched and stitched on it; without the key nobody can test a guess ("is it
alice@example.com?"), which a plain hash would allow. Values are normalised first so
``Alice@Example.com `` and ``alice@example.com`` are one person.

>>> p = Pseudonymizer(b"k" * 32)
>>> p.pseudonym("email", " Alice@Example.com") == p.pseudonym("email", "alice@example.com")
True
>>> p.pseudonym("email", "alice@example.com")[:5]
'hmac:'

A personal value need not be text: a phone number sent as a JSON number is pseudonymised
as its text (``canonical``), so ``4915112345678`` and ``"4915112345678"`` are one person.

>>> p.pseudonym("phone", canonical(4915112345678)) == p.pseudonym("phone", "4915112345678")
True
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

PREFIX = "hmac:"
_NOT_DIGITS = re.compile(r"[^0-9+]")
_PSEUDONYM = re.compile(r"hmac:[0-9a-f]{64}\Z")


def is_pseudonym(value: object) -> bool:
    """Whether ``value`` is a pseudonym already: only that exact shape passes unhashed, so a
    client's ``"hmac:alice@example.com"`` is pseudonymised like any other value."""
    return isinstance(value, str) and _PSEUDONYM.match(value) is not None


def canonical(value: object) -> str:
    """The text a personal value of any JSON type is pseudonymised and sealed as.

    Text is itself; any other value is its compact JSON text with sorted keys (``true``,
    ``42``, ``{"a":1}``), except that an integral number drops its ``.0``: a phone number
    sent as ``4915112345678.0`` is the person who sent ``4915112345678``, and the phone
    normalisation, which keeps digits only, must not read it as ``49151123456780``.

    >>> canonical("Bob"), canonical(4915112345678), canonical(4915112345678.0)
    ('Bob', '4915112345678', '4915112345678')
    >>> canonical(True), canonical(1.5), canonical({"b": [1, "x"], "a": None})
    ('true', '1.5', '{"a":null,"b":[1,"x"]}')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalise(field: str, value: str) -> str:
    """The canonical form of a personal value, so that spelling variants match."""
    text = value.strip()
    if field == "email":
        return text.lower()
    if field == "phone":
        return _NOT_DIGITS.sub("", text)
    return text


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under one secret key (``CDPULSE_PSEUDONYM_KEY``)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def pseudonym(self, field: str, value: str) -> str:
        """``hmac:<hex>`` of the normalised value; the field name is part of the message,
        so an email and a phone number that happen to be equal strings never collide."""
        # surrogatepass: a JSON "\\ud800" parses to a lone surrogate, which must hash, not raise
        message = f"{field}\x00{normalise(field, value)}".encode("utf-8", "surrogatepass")
        return PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def of_id(self, profile_id: str) -> str:
        """The pseudonym of a customer or anonymous id, exactly as given (ids are not
        normalised): what the output topics, the erasure ledger and audit records carry."""
        message = f"id\x00{profile_id}".encode()
        return PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def event(self, event: dict[str, Any], profile_id: str) -> dict[str, Any]:
        """An event dict fit to leave the profile store: the profile's pseudonym as its
        only id, without its context (device, locale, campaign)."""
        out = {k: v for k, v in event.items() if k not in ("anonymous_id", "context")}
        out["customer_id"] = self.of_id(profile_id)
        return out

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"


class RememberedPseudonyms:
    """``Pseudonymizer.of_id`` with the ``size`` ids asked for last remembered: an HMAC
    costs ~4 µs, and a role names the same customers again and again (a worker's saves
    batch after batch; an api's audit records and recommendation lists)."""

    def __init__(self, pseudonyms: Pseudonymizer, size: int) -> None:
        self.of_id: Callable[[str], str] = functools.lru_cache(maxsize=size)(pseudonyms.of_id)


Pseudonyms = Pseudonymizer | RememberedPseudonyms
