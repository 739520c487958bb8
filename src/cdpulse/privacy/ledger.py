"""The erasure ledger: which ids were erased, so that replaying old events cannot bring
a customer back.

It holds pseudonyms (``Pseudonymizer.of_id``), never the ids: the ledger itself must
not be a list of the people who asked to be forgotten. An erased id stays erased: its
later events are dropped and counted, and a returning customer gets a new id.

The ledger is kept twice: in Redis, where every batch reads it, and in a compacted
Kafka topic (``CDPULSE_TOPIC_ERASURES``), from which ``cdpulse rebuild`` loads it into
an empty Redis. A record of that topic is keyed by the pseudonym and holds a small JSON
value; it is never a tombstone:

>>> entry_json(1_700_000_000_000)
b'{"erased_at":1700000000000,"version":1}'
>>> read_erased_at(entry_json(1_700_000_000_000))
1700000000000
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from cdpulse.privacy.pseudonyms import Pseudonymizer, is_pseudonym

LEDGER_VERSION = 1


class LedgerEntry(msgspec.Struct, frozen=True):
    """The value of one record of the ledger's topic. Fields may be added in later
    versions; ``erased_at`` keeps its meaning."""

    erased_at: int  # epoch ms: when the id was (first, or again) erased
    version: int = LEDGER_VERSION


class LedgerRecordError(ValueError):
    """A record of the ledger's topic that this code cannot read; the message says why."""


_DECODER = msgspec.json.Decoder(LedgerEntry)


def entry_json(erased_at: int) -> bytes:
    """The value of the topic's record for an id erased at ``erased_at`` (epoch ms)."""
    return msgspec.json.encode(LedgerEntry(erased_at))


def read_pseudonym(key: bytes | None) -> str:
    """The pseudonym a record of the topic is keyed by.

    >>> read_pseudonym(b"hmac:" + b"0" * 64)[:9]
    'hmac:0000'
    >>> read_pseudonym(b"C-1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cdpulse.privacy.ledger.LedgerRecordError: a ledger record's key must be a pseudonym ...
    """
    text = key.decode("utf-8", "replace") if key is not None else None
    if not is_pseudonym(text):
        size = "no key" if key is None else f"{len(key)} bytes that are not"
        # The key is not quoted: a raw id there would be a person's id.
        raise LedgerRecordError(
            f"a ledger record's key must be a pseudonym ('hmac:' and 64 hex digits), got {size}"
        )
    assert text is not None
    return text


def read_erased_at(value: bytes | None) -> int:
    """The erasure time (epoch ms) a record's value holds.

    >>> read_erased_at(b'{"erased_at": 5, "version": 2, "by": "x"}')  # newer: still read
    5
    >>> read_erased_at(None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cdpulse.privacy.ledger.LedgerRecordError: a ledger record is a tombstone; ...
    """
    if value is None:
        raise LedgerRecordError(
            "a ledger record is a tombstone; cdpulse never writes one (the ledger is never emptied)"
        )
    try:
        entry = _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        raise LedgerRecordError(f"a ledger record's value does not read: {exc}") from None
    except msgspec.DecodeError as exc:
        raise LedgerRecordError(f"a ledger record's value is not JSON: {exc}") from None
    if entry.version < 1 or entry.erased_at < 0:
        raise LedgerRecordError(
            f"a ledger record's value has version {entry.version} and erased_at "
            f"{entry.erased_at}: the version must be at least 1, the time not negative"
        )
    return entry.erased_at


class Ledger(Protocol):
    """Remembers erased ids."""

    async def erased(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` that were erased."""
        ...

    async def record(self, ids: list[str], at: int) -> None:
        """Remember ``ids`` as erased at ``at`` (epoch ms)."""
        ...


class MemoryLedger:
    """The ledger in a dict: for unit tests and in-process replays."""

    def __init__(self, pseudonyms: Pseudonymizer) -> None:
        self.pseudonyms = pseudonyms
        self.entries: dict[str, int] = {}

    async def erased(self, ids: list[str]) -> set[str]:
        return {i for i in ids if self.pseudonyms.of_id(i) in self.entries}

    async def record(self, ids: list[str], at: int) -> None:
        for profile_id in ids:
            self.entries.setdefault(self.pseudonyms.of_id(profile_id), at)
