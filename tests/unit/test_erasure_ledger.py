"""The erasure ledger's topic records: what the worker writes and a rebuild reads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
