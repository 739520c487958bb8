"""A dead letter says why and where an event is wrong, never what it held."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdpulse.contract import validation as v
from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.message import Message
from cdpulse.pipeline.decode import decode_batch
from cdpulse.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SKEW = timedelta(seconds=Settings().max_future_skew_seconds)

EMAIL = "Alice.Jones@Example.com"
PHONE = "+49 30 1234567"
NAME = "Alice Jones"
ADDRESS = "12 Baker Street, London NW1 6XE"
# Every value planted below, and the forms a message could quote them in.
PLANTED = (EMAIL, EMAIL.lower(), PHONE, "1234567", NAME, "Baker Street", "NW1 6XE")


def _event(event_type: str, properties: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": event_type,
        "timestamp": "2026-11-26T10:00:00Z",
        "customer_id": "C-1",
        "channel": "web",
        "properties": properties,
        **envelope,
    }


# (document, reason, what the detail must name: the path and the error type)
HOSTILE: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [
    (
        _event(
            "identify",
            {"traits": {"email": [EMAIL], "phone": {"number": PHONE}, "name": [NAME]}},
        ),
        v.INVALID_FIELD,
        ("'properties.traits.email.constrained-str'", "[string_type]"),
    ),
    (
        _event("identify", {"traits": {"address": ADDRESS * 20}}),
        v.INVALID_FIELD,
        ("'properties.traits.address.constrained-str'", "[string_too_long]"),
    ),
    (
        _event("identify", {"traits": {EMAIL: [1]}}),  # the key itself is personal
        v.INVALID_FIELD,
        ("'properties.traits.[key].constrained-str'", "[string_type]"),
    ),
    (
        _event("identify", {"traits": {"email": EMAIL}}, timestamp=EMAIL),
        v.INVALID_FIELD,
        ("'timestamp'", "RFC 3339", "[value_error]"),
    ),
    (
        _event("identify", {"traits": {"phone": PHONE}}, timestamp=f"{PHONE} 10:00"),
        v.INVALID_FIELD,
        ("'timestamp'", "[value_error]"),
    ),
    (
        _event("identify", {}, timestamp=4930_1234567_000_000),  # a phone number's digits
        v.INVALID_FIELD,
        ("'timestamp'", "between 1970 and 3000"),
    ),
    (
        _event(
            "order_completed",
            {
                "order_id": "O-1",
                "revenue": EMAIL,
                "currency": NAME,
                "items": [{"product_id": ADDRESS, "category": "c", "price": PHONE, "quantity": 1}],
            },
        ),
        v.INVALID_FIELD,
        ("'properties.revenue'", "[float_type]", "'properties.currency'"),
    ),
    (
        _event("page_viewed", {"url": "/", "campaign_id": "x"}, channel=NAME),
        v.INVALID_FIELD,
        ("'channel'", "[literal_error]"),
    ),
    (
        _event("search_performed", {"query": f"{NAME} {ADDRESS} " * 40, "results": PHONE}),
        v.INVALID_FIELD,
        ("'properties.query'", "[string_too_long]", "'properties.results'", "[int_type]"),
    ),
    (
        _event(
            "product_viewed",
            {"product_id": "P-1", "category": "c", "price": 1.0},
            context={"locale": f"{ADDRESS}, {ADDRESS}", "campaign": {"name": [NAME]}},
        ),
        v.INVALID_FIELD,
        ("'context.locale'", "[string_too_long]", "'context.campaign.name'"),
    ),
    (_event(EMAIL, {"traits": {"name": NAME}}), v.UNKNOWN_TYPE, ("unknown 'type'",)),
    (
        _event("identify", {"traits": {"email": EMAIL}}, customer_id=None, anonymous_id=NAME),
        v.MISSING_ID,
        ("customer_id",),
    ),
]


def _leaked(text: str) -> list[str]:
    return [value for value in PLANTED if value in text]


@pytest.mark.parametrize(("doc", "reason", "names"), HOSTILE)
def test_a_rejection_names_path_and_type_but_no_value(
    doc: dict[str, Any], reason: str, names: tuple[str, ...]
) -> None:
    for result in (v.decode(json.dumps(doc).encode(), now=NOW), v.validate(doc, now=NOW)):
        assert isinstance(result, v.Rejection), result
        assert result.reason == reason, result.detail
        assert not _leaked(result.detail), result.detail
        for name in names:
            assert name in result.detail, result.detail


def test_the_workers_dead_letters_carry_no_planted_value_in_their_detail() -> None:
    messages = [
        Message("cdp.customers", 0, offset, b"C-1", json.dumps(doc).encode(), None)
        for offset, (doc, _, _) in enumerate(HOSTILE)
    ]
    decoded = decode_batch(
        messages, max_bytes=Settings().max_event_bytes, max_future_skew=SKEW, now=NOW
    )
    assert not decoded.items
    assert [d.reason for d in decoded.dead_letters] == [reason for _, reason, _ in HOSTILE]
    for letter in decoded.dead_letters:
        body = json.loads(letter.to_json())
        assert not _leaked(body["detail"]), body["detail"]


def test_a_dead_letters_raw_copy_keeps_the_shape_but_not_email_or_phone() -> None:
    doc = HOSTILE[0][0]
    raw = json.dumps(doc).encode()
    result = v.decode(raw, now=NOW)
    assert isinstance(result, v.Rejection)
    body = json.loads(DeadLetter.of(Message("http", -1, -1, None, raw), result, NOW).to_json())
    assert EMAIL not in body["raw"] and PHONE not in body["raw"]
    assert '"traits"' in body["raw"] and body["raw_bytes"] == len(raw)
