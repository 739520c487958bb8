"""The audit record of one read of customer data, and the query ``cdpulse audit`` runs.

A record says who read (the token's name, never its secret), why (the token's declared
purpose), through which route (its pattern, never the path: a path holds ids), whom (the
customers the answer was about, each as the keyed pseudonym of their id, the one the
erasure audit and the output topics carry), when (epoch ms) and with which answer (the
HTTP status). Nothing else: no id, no trait, no query string, no body. A route's other
path parameters (a segment's or an experiment's name) are kept only for an answer that
succeeded, when they named something configured rather than whatever a caller typed.

>>> record = ReadRecord("r1", 1_700_000_000_000, "crm", "support", "GET",
...                     "/v1/profiles/{profile_id}", 200, ["hmac:ab"])
>>> ReadRecord.from_json(record.to_json()) == record
True
>>> AuditQuery(tokens=frozenset({"crm"}), routes=("/v1/profiles/*",)).matches(record)
True
>>> AuditQuery(subjects=frozenset({"hmac:cd"})).matches(record)
False
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

import msgspec

from cdpulse.privacy.pseudonyms import Pseudonymizer, is_pseudonym

UNSPECIFIED = "unspecified"  # the purpose of a token that declares none


class ReadAuditError(ValueError):
    """A record of the read-audit topic that does not read as one."""


class ReadRecord(msgspec.Struct, frozen=True):
    """One answered read of customer data (``cdp.read-audit``)."""

    id: str  # unique per record: a record sent twice (at least once) is one read
    at: int  # when the api answered, epoch ms (wall clock)
    token: str
    purpose: str
    method: str
    route: str
    status: int
    subjects: list[str]  # pseudonyms of the ids the read was about
    params: dict[str, str] = msgspec.field(default_factory=dict)
    audit: Literal["read"] = "read"  # as the erasure and merge records of cdp.audit name theirs

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, raw: bytes | None) -> ReadRecord:
        """The record in ``raw``; :class:`ReadAuditError` naming what is wrong otherwise."""
        if raw is None:
            raise ReadAuditError("a tombstone (no value): cdpulse writes none to the audit")
        try:
            return _DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            raise ReadAuditError(f"not a read audit record: {exc}") from exc


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ReadRecord)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which records ``cdpulse audit`` prints: each given criterion must hold (within one,
    any of its values may); ``since_ms`` inclusive, ``until_ms`` exclusive."""

    tokens: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()  # pseudonyms
    routes: tuple[str, ...] = ()  # route patterns, or globs over them ("/v1/profiles/*")
    purposes: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: ReadRecord) -> bool:
        if self.tokens and record.token not in self.tokens:
            return False
        if self.purposes and record.purpose not in self.purposes:
            return False
        if self.since_ms is not None and record.at < self.since_ms:
            return False
        if self.until_ms is not None and record.at >= self.until_ms:
            return False
        if self.routes and not any(fnmatch.fnmatchcase(record.route, r) for r in self.routes):
            return False
        return not self.subjects or not self.subjects.isdisjoint(record.subjects)


def subject_of(value: str, pseudonyms: Pseudonymizer) -> str:
    """The pseudonym audit records name a customer or visitor id by; a pseudonym already
    (``hmac:`` and 64 hex digits, as the output topics carry them) is kept.

    >>> p = Pseudonymizer(b"k" * 32)
    >>> subject_of("C-1", p) == p.of_id("C-1") == subject_of(p.of_id("C-1"), p)
    True
    """
    return value if is_pseudonym(value) else pseudonyms.of_id(value)
