"""Data problems injected into a shop's event stream, from an event time on.

Each problem is what a producer going wrong looks like downstream:

* ``Nulls(type, field, after)``: a broken producer sends the property as null (an
  optional field: the event is still valid; a required one: it is rejected);
* ``PriceUnit(factor, after)``: prices and amounts sent in another unit (100: cents
  where euros were meant): product prices, line items, revenues, refunds, cart values;
* ``Stall(stream, after)``: a stream stops (``clickstream``, ``transactions`` or
  ``customers``): its events after ``after`` never arrive.

Each may end: with ``until`` set, the producer is fixed from then on (the stream after it
is the shop's own again). The problems change nothing else, so the stream before
``after`` is the shop's own.

>>> from datetime import UTC, datetime
>>> event = {"type": "product_viewed", "timestamp": "2026-01-02T00:00:00.000Z",
...          "properties": {"product_id": "P-1", "category": "c", "price": 9.5}}
>>> cents = PriceUnit(100, datetime(2026, 1, 1, tzinfo=UTC))
>>> [e["properties"]["price"] for e in broken([event], [cents])]
[950.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from cdpulse.contract.topics import STREAM_OF_TYPE, Stream
from cdpulse.simulate.storefront import Event

# The amounts a unit change multiplies: event type -> property names.
AMOUNTS = {
    "product_viewed": ("price",),
    "product_added": ("price",),
    "checkout_started": ("cart_value",),
    "order_completed": ("revenue",),
    "order_refunded": ("amount",),
}


@dataclass(frozen=True, slots=True)
class Nulls:
    type: str
    field: str
    after: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PriceUnit:
    factor: float
    after: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Stall:
    stream: Stream
    after: datetime
    until: datetime | None = None


Problem = Nulls | PriceUnit | Stall


def broken(events: Iterable[Event], problems: Sequence[Problem]) -> Iterator[Event]:
    """``events`` with ``problems`` injected, each from its ``after`` to its ``until``."""
    for event in events:
        at = _time(event["timestamp"])
        due = [p for p in problems if at >= p.after and (p.until is None or at < p.until)]
        if any(isinstance(p, Stall) and STREAM_OF_TYPE[event["type"]] == p.stream for p in due):
            continue
        for problem in due:
            if isinstance(problem, Nulls) and event["type"] == problem.type:
                event = {**event, "properties": {**event["properties"], problem.field: None}}
            elif isinstance(problem, PriceUnit):
                event = _rescaled(event, problem.factor)
        yield event


def _rescaled(event: Event, factor: float) -> Event:
    properties = dict(event["properties"])
    for name in AMOUNTS.get(event["type"], ()):
        if properties.get(name) is not None:
            properties[name] = round(properties[name] * factor, 2)
    if event["type"] == "order_completed":
        properties["items"] = [
            {**item, "price": round(item["price"] * factor, 2)} for item in properties["items"]
        ]
    return {**event, "properties": properties}


def _time(stamp: object) -> datetime:
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    raise TypeError(f"a shop event's timestamp is RFC 3339 text, got {stamp!r}")
