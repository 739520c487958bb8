"""The event contract: what is accepted, what is rejected and why."""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract import validation as v
from cdpulse.contract.events import EVENT_TYPES
from cdpulse.contract.mirror import OrderCompletedEvent
from cdpulse.contract.topics import STREAM_OF_TYPE, Topics
from cdpulse.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

ORDER: dict[str, Any] = {
    "event_id": "e-1",
    "type": "order_completed",
    "timestamp": "2026-11-26T10:00:00+01:00",
    "customer_id": "C-1",
    "channel": "web",
    "context": {"locale": "de-DE", "campaign": {"source": "newsletter"}},
    "properties": {
        "order_id": "O-1",
        "revenue": 118.0,
        "currency": "EUR",
        "items": [{"product_id": "P-1", "category": "shoes", "price": 59.0, "quantity": 2}],
    },
}


def check(obj: Any) -> Any:
    return v.decode(json.dumps(obj).encode(), now=NOW)


def mutated(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ORDER)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


DELETE = object()


def test_a_valid_order_is_accepted_with_its_time_in_utc() -> None:
    event = check(ORDER)
    assert isinstance(event, OrderCompletedEvent)
    assert event.at == int(datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp() * 1000)
    assert event.key == "C-1"


def test_epoch_milliseconds_are_accepted() -> None:
    millis = int(datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp() * 1000)
    event = check(mutated(["timestamp"], millis))
    assert not isinstance(event, v.Rejection)
    assert event.at == millis


@pytest.mark.parametrize(
    ("doc", "reason", "mentions"),
    [
        (mutated(["type"], "order_placed"), v.UNKNOWN_TYPE, "unknown 'type'"),
        (mutated(["type"], DELETE), v.MISSING_TYPE, "'type'"),
        (mutated(["customer_id"], DELETE), v.MISSING_ID, "customer_id"),
        (mutated(["event_id"], DELETE), v.INVALID_FIELD, "event_id"),
        (mutated(["properties", "revenue"], "118"), v.INVALID_FIELD, "properties.revenue"),
        (mutated(["properties", "items", 0, "price"], -3), v.INVALID_FIELD, "items.0.price"),
        (mutated(["properties", "items", 0, "quantity"], 0), v.INVALID_FIELD, "quantity"),
        (mutated(["properties", "currency"], "euro"), v.INVALID_FIELD, "currency"),
        (mutated(["channel"], "carrier_pigeon"), v.INVALID_FIELD, "channel"),
        (mutated(["timestamp"], "2026-11-26T10:00:00"), v.INVALID_FIELD, "offset"),
        (mutated(["timestamp"], "yesterday"), v.INVALID_FIELD, "RFC 3339"),
        (mutated(["timestamp"], True), v.INVALID_FIELD, "boolean"),
        (mutated(["timestamp"], "2026-11-26T13:00:00Z"), v.FUTURE_TIMESTAMP, "ahead of now"),
        ([ORDER], v.NOT_AN_OBJECT, "list"),
    ],
)
def test_rejections_name_the_field_and_the_reason(doc: Any, reason: str, mentions: str) -> None:
    result = check(doc)
    assert isinstance(result, v.Rejection), result
    assert result.reason == reason
    assert mentions in result.detail


def test_nan_and_infinity_are_rejected() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        raw = json.dumps(ORDER).encode().replace(b"118.0", literal)
        result = v.decode(raw, now=NOW)
        assert isinstance(result, v.Rejection)
        assert result.reason == v.INVALID_FIELD
        assert "finite" in result.detail


def test_size_utf8_and_json_are_checked_before_anything_else() -> None:
    assert v.decode(b"{" + b" " * 70000 + b"}", now=NOW).reason == v.TOO_LARGE  # type: ignore[union-attr]
    assert v.decode(b'{"event_id": "\xff"}', now=NOW).reason == v.INVALID_UTF8  # type: ignore[union-attr]
    assert v.decode(b'{"event_id": ', now=NOW).reason == v.INVALID_JSON  # type: ignore[union-attr]
    deep = b"[" * 5000 + b"]" * 5000
    assert v.decode(deep, now=NOW).reason == v.INVALID_JSON  # type: ignore[union-attr]


def test_every_type_routes_to_a_topic() -> None:
    topics = Topics.from_settings(Settings())
    assert set(STREAM_OF_TYPE) == set(EVENT_TYPES)
    assert topics.for_type("order_completed") == "cdp.transactions"
    assert topics.for_type("product_added") == "cdp.clickstream"
    assert topics.for_type("identify") == "cdp.customers"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_rejection(raw: bytes) -> None:
    result = v.decode(raw, now=NOW)
    assert isinstance(result, v.Rejection) or result.event_id


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["properties", "items", 0, "price", "timestamp", "channel"]),
        min_size=1,
        max_size=3,
    ),
    json_values,
)
def test_mutated_orders_never_raise(path: list[Any], value: Any) -> None:
    doc: Any = copy.deepcopy(ORDER)
    target = doc
    for part in path[:-1]:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            break
    with contextlib.suppress(TypeError, IndexError):
        target[path[-1]] = value
    raw = json.dumps(doc, allow_nan=True).encode()
    result = v.decode(raw, now=NOW)
    if isinstance(result, v.Rejection):
        assert result.reason in v.REASONS
        assert result.detail


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e13))
def test_prices_are_accepted_exactly_when_non_negative(price: float) -> None:
    result = check(mutated(["properties", "items", 0, "price"], price))
    assert isinstance(result, v.Rejection) == (price < 0 or price > 1e12)


def test_future_skew_is_configurable() -> None:
    doc = mutated(["timestamp"], "2026-11-26T12:09:00Z")
    raw = json.dumps(doc).encode()
    assert isinstance(v.decode(raw, now=NOW), v.Rejection)
    assert not isinstance(
        v.decode(raw, now=NOW, max_future_skew=timedelta(minutes=10)), v.Rejection
    )
