"""Sealed model snapshots: only a holder of the deployment's key can write one a role loads.

Model snapshots are pickles, and unpickling runs code: whoever could write one Redis key
would run code in every worker and api process. The learner seals each snapshot with
HMAC-SHA256 under a key derived from ``CDPULSE_PSEUDONYM_KEY`` (which every role already
needs), and a role opens it, checking the seal in constant time, before ``pickle.loads``
ever sees the bytes::

    >>> seal = Seal(b"k" * 32)
    >>> sealed = seal.close(b"payload")
    >>> seal.open(sealed)
    b'payload'
    >>> seal.open(sealed[:-1] + b"!") is None, seal.open(b"payload") is None
    (True, True)
    >>> Seal(b"another key").open(sealed) is None
    True

The derived key is not the pseudonym key itself: a seal reveals nothing about
pseudonyms, and no pseudonym can be passed off as a seal.
"""

from __future__ import annotations

import hashlib
import hmac

from cdpulse.settings import Settings

MAGIC = b"cdpulse-sealed-v1\n"
_MAC = hashlib.sha256().digest_size


class Seal:
    """Closes bytes under a MAC and opens only what it closed."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"cdpulse model snapshots", hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> Seal:
        return cls(settings.pseudonym_key.get_secret_value().encode())

    def close(self, payload: bytes) -> bytes:
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return MAGIC + mac + payload

    def open(self, sealed: bytes) -> bytes | None:
        """The payload, or None when ``sealed`` was not closed by this key (or changed)."""
        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + _MAC:
            return None
        mac = sealed[len(MAGIC) : len(MAGIC) + _MAC]
        payload = sealed[len(MAGIC) + _MAC :]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        return payload if hmac.compare_digest(mac, expected) else None
