"""Broken messages, each with the reason the contract must reject it for.

A real stream carries garbage: clients with bugs, truncated writes, wrong encodings.
``malformed_event`` derives one broken raw line from a valid event, and says which
``cdpulse.contract.validation`` reason code ``decode`` must answer with, so tests and
the dead-letter path can be checked kind by kind.

>>> import random
>>> event = {"event_id": "e1", "type": "product_viewed", "timestamp": "2026-01-01T10:00:00.000Z",
...          "anonymous_id": "a-1", "channel": "web",
...          "properties": {"product_id": "P-1", "category": "books", "price": 9.99}}
>>> raw, reason = malformed_event(random.Random(1), event, kind="nan_literal")
>>> raw[-14:], reason
(b',"price":NaN}}', 'invalid_field')
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from cdpulse.contract import validation

Event = dict[str, Any]

# Numeric properties of the contract, for the kinds that break a number.
_NUMBERS = ("price", "revenue", "amount", "cart_value", "value", "quantity", "results")
_MAX_EVENT_BYTES = 65536


def encode(event: Event) -> bytes:
    """One JSON Lines record: compact JSON, ASCII only, so never a raw newline inside."""
    return json.dumps(event, separators=(",", ":"), allow_nan=True).encode()


def _unknown_type(rng: random.Random, event: Event) -> bytes:
    event["type"] = rng.choice(("page_view", "product_teleported", "ORDER_COMPLETED", ""))
    return encode(event)


def _missing_type(rng: random.Random, event: Event) -> bytes:
    del event["type"]
    return encode(event)


def _missing_ids(rng: random.Random, event: Event) -> bytes:
    event.pop("customer_id", None)
    event.pop("anonymous_id", None)
    return encode(event)


def _set_number(event: Event, fallback_timestamp: Any, make: Callable[[Any], Any]) -> bytes:
    """Replace a numeric property by ``make(old)``, or, lacking one, the timestamp."""
    properties = event.get("properties") or {}
    for name in _NUMBERS:
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            properties[name] = make(value)
            return encode(event)
    event["timestamp"] = fallback_timestamp
    return encode(event)


def _wrong_type(rng: random.Random, event: Event) -> bytes:
    return _set_number(event, ["2026-01-01"], lambda _: rng.choice(("abc", "12.50", "1")))


def _negative_number(rng: random.Random, event: Event) -> bytes:
    return _set_number(event, -1000, lambda value: -abs(value) - 1)


def _nan_literal(rng: random.Random, event: Event) -> bytes:
    return _set_number(event, float("nan"), lambda _: float("nan"))


def _infinity_literal(rng: random.Random, event: Event) -> bytes:
    infinity = rng.choice((float("inf"), float("-inf")))
    return _set_number(event, infinity, lambda _: infinity)


def _future_timestamp(rng: random.Random, event: Event) -> bytes:
    # a century past the event's own time: in the future for any plausible ``now``
    when = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    event["timestamp"] = (when + timedelta(days=36525)).isoformat().replace("+00:00", "Z")
    return encode(event)


def _missing_timestamp(rng: random.Random, event: Event) -> bytes:
    del event["timestamp"]
    return encode(event)


def _bad_timestamp(rng: random.Random, event: Event) -> bytes:
    naive = event["timestamp"].removesuffix("Z")  # no offset: ambiguous, so rejected
    event["timestamp"] = rng.choice((naive, "yesterday", "2026-13-45T25:61:00Z", ""))
    return encode(event)


def _too_large(rng: random.Random, event: Event) -> bytes:
    event["debug"] = "x" * (_MAX_EVENT_BYTES + rng.randrange(1, 4096))
    return encode(event)


def _invalid_utf8(rng: random.Random, event: Event) -> bytes:
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"))
    return encode(event).replace(b'"type":"', b'"type":"' + bad, 1)


def _not_an_object(rng: random.Random, event: Event) -> bytes:
    return json.dumps(rng.choice(([event], event["type"], 42, None))).encode()


def _truncated_json(rng: random.Random, event: Event) -> bytes:
    raw = encode(event)
    # any proper prefix of a JSON object lacks its closing brace, so it never parses
    return raw[: rng.randrange(1, len(raw))]


MALFORMED_KINDS: dict[str, tuple[Callable[[random.Random, Event], bytes], str]] = {
    "unknown_type": (_unknown_type, validation.UNKNOWN_TYPE),
    "missing_type": (_missing_type, validation.MISSING_TYPE),
    "missing_ids": (_missing_ids, validation.MISSING_ID),
    "wrong_type": (_wrong_type, validation.INVALID_FIELD),
    "negative_number": (_negative_number, validation.INVALID_FIELD),
    "nan_literal": (_nan_literal, validation.INVALID_FIELD),
    "infinity_literal": (_infinity_literal, validation.INVALID_FIELD),
    "future_timestamp": (_future_timestamp, validation.FUTURE_TIMESTAMP),
    "missing_timestamp": (_missing_timestamp, validation.INVALID_FIELD),
    "bad_timestamp": (_bad_timestamp, validation.INVALID_FIELD),
    "too_large": (_too_large, validation.TOO_LARGE),
    "invalid_utf8": (_invalid_utf8, validation.INVALID_UTF8),
    "not_an_object": (_not_an_object, validation.NOT_AN_OBJECT),
    "truncated_json": (_truncated_json, validation.INVALID_JSON),
}
"""Each kind of breakage: how to make it from a valid event, and the expected reason."""


def malformed_event(
    rng: random.Random, valid_event: Event, kind: str | None = None
) -> tuple[bytes, str]:
    """A broken raw line derived from ``valid_event`` and the reason ``decode`` must give.

    ``kind`` picks one of ``MALFORMED_KINDS``; by default one is drawn from ``rng``.
    The valid event is not modified; the broken copy's ``event_id`` gets a ``-bad``
    suffix so it never collides with the valid one.
    """
    if kind is None:
        kind = rng.choice(tuple(MALFORMED_KINDS))
    elif kind not in MALFORMED_KINDS:
        raise ValueError(
            f"unknown malformed kind {kind!r}; expected one of {list(MALFORMED_KINDS)}"
        )
    # json round trip: a deep copy the kind can mutate freely
    event = json.loads(json.dumps(valid_event))
    event["event_id"] = f"{event['event_id']}-bad"
    make, reason = MALFORMED_KINDS[kind]
    return make(rng, event), reason


def mix_malformed(
    events: Iterable[Event], fraction: float, rng: random.Random
) -> Iterator[tuple[bytes, str | None]]:
    """Encoded lines with malformed ones mixed in: about ``fraction`` of all lines.

    Yields ``(raw, reason)``: ``reason`` is None for a valid event, else the code the
    contract must reject the line with. Each valid event is still yielded, so the
    valid part of the stream is the same whatever the fraction.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the malformed fraction must be in [0, 1), got {fraction}")
    for event in events:
        # before each valid line, another malformed one with probability ``fraction``:
        # a geometric number of them, which makes ``fraction`` of the lines malformed
        while fraction and rng.random() < fraction:
            yield malformed_event(rng, event)
        yield encode(event), None
