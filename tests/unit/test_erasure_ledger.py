"""The erasure ledger's topic records: what the worker writes and a rebuild reads back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.contract.message import Message
from cdpulse.ingest.ledger import load_ledger
from cdpulse.privacy.ledger import (
    LEDGER_VERSION,
    LedgerRecordError,
    entry_json,
    read_erased_at,
    read_pseudonym,
)
from cdpulse.privacy.pseudonyms import Pseudonymizer

NAMES = Pseudonymizer(b"k" * 32)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_an_entry_reads_back_as_the_time_it_was_written_with(at: int) -> None:
    assert read_erased_at(entry_json(at)) == at
    assert json.loads(entry_json(at)) == {"erased_at": at, "version": LEDGER_VERSION}


def test_a_newer_version_with_more_fields_still_reads_its_time() -> None:
    value = json.dumps({"erased_at": 42, "version": LEDGER_VERSION + 1, "reason": "x"})
    assert read_erased_at(value.encode()) == 42


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "tombstone"),
        (b"not json", "not JSON"),
        (b"[]", "does not read"),
        (b'{"version": 1}', "erased_at"),
        (b'{"erased_at": "yesterday", "version": 1}', "does not read"),
        (b'{"erased_at": 1.5, "version": 1}', "does not read"),
        (b'{"erased_at": -1, "version": 1}', "not negative"),
        (b'{"erased_at": 1, "version": 0}', "at least 1"),
    ],
)
def test_an_unreadable_value_is_refused_naming_why(value: bytes | None, says: str) -> None:
    with pytest.raises(LedgerRecordError, match=says):
        read_erased_at(value)


def test_a_pseudonym_key_reads_as_itself() -> None:
    pseudonym = NAMES.of_id("C-1")
    assert read_pseudonym(pseudonym.encode()) == pseudonym


@pytest.mark.parametrize(
    "key",
    [
        None,
        b"C-1",
        b"alice@example.com",
        b"hmac:" + b"0" * 63,
        b"hmac:" + b"A" * 64,
        b"hmac:" + b"0" * 64 + b"\n",
        b"\xff\xfe",
    ],
)
def test_a_key_that_is_not_a_pseudonym_is_refused_without_quoting_it(key: bytes | None) -> None:
    with pytest.raises(LedgerRecordError, match="must be a pseudonym") as refused:
        read_pseudonym(key)
    if key:
        assert key.decode("utf-8", "replace") not in str(refused.value)


class _Topic:
    """The ledger's topic as ``load_ledger`` reads it: lists of messages."""

    def __init__(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        self.messages = [Message("erasures", 0, n, k, v) for n, (k, v) in enumerate(records)]

    def batches(self, size: int) -> Iterator[list[Message]]:
        for start in range(0, len(self.messages), size):
            yield self.messages[start : start + size]


class _Ledger:
    """A Redis ledger's ``restore``: HSETNX semantics, an entry held keeps its time."""

    def __init__(self, held: dict[str, int] | None = None) -> None:
        self.entries = dict(held or {})

    async def restore(self, entries: Iterable[tuple[str, int]]) -> None:
        for pseudonym, at in entries:
            self.entries.setdefault(pseudonym, at)


def test_loading_keeps_each_pseudonym_at_its_first_time_and_skips_non_entries() -> None:
    a, b, c, d = (NAMES.of_id(i) for i in ("C-1", "A-1", "C-2", "C-3"))
    topic = _Topic(
        [
            (a.encode(), entry_json(20)),
            (b.encode(), entry_json(20)),
            (a.encode(), entry_json(10)),  # erased again before compaction: the first wins
            (c.encode(), b"garbage"),  # kept erased, time unknown
            (d.encode(), b"garbage"),
            (d.encode(), entry_json(7)),  # a readable record of it gives its time
            (b"C-4", entry_json(5)),  # a raw id: never loaded into the ledger
            (None, entry_json(5)),
            (NAMES.of_id("C-5").encode(), None),  # a tombstone erases nothing
        ]
    )
    live, target = _Ledger({b: 1}), _Ledger()
    steps: list[int] = []
    report = asyncio.run(load_ledger(topic, [live, target], steps.append))  # type: ignore[arg-type]
    assert target.entries == {a: 10, b: 20, c: 0, d: 7}
    assert live.entries == {a: 10, b: 1, c: 0, d: 7}  # what it held keeps its time
    assert (report.records, report.loaded, report.unreadable, report.skipped) == (9, 4, 2, 3)
    assert sum(steps) == 9
    assert len(report.problems) == 2 and "C-4" not in " ".join(report.problems)


def test_loading_an_empty_topic_loads_nothing_and_reports_no_problem() -> None:
    ledger = _Ledger()
    report = asyncio.run(load_ledger(_Topic([]), [ledger]))  # type: ignore[arg-type]
    assert ledger.entries == {} and report.loaded == 0 and report.problems == []
