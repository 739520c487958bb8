"""What a recommender learns from an event: which products, how strongly, when.

``interactions`` reads any form an item event takes in the engine, without pydantic:
the worker's event structs and the contract's models (duck-typed on ``type``,
``properties`` and ``at`` or ``timestamp``), their JSON as a dict (checked here with
msgspec against the few fields it needs), or interactions already read (an
``ItemEvent``'s ``items``).

>>> interactions({"type": "order_completed", "timestamp": "2026-01-01T00:00:00Z",
...               "properties": {"items": [{"product_id": "P-1", "category": "shoes"}]}})
[Interaction(product_id='P-1', category='shoes', level=3, time=1767225600000)]
>>> interactions({"type": "page_viewed"})
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

VIEW, CART, PURCHASE = 1, 2, 3
LEVEL_OF_TYPE = {"product_viewed": VIEW, "product_added": CART, "order_completed": PURCHASE}

_LATEST_MS = 32503680000000  # year 3000, the contract's bound
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Millis = Annotated[int, Meta(ge=0, lt=_LATEST_MS)]


class Interaction(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One product a customer viewed (level 1), added (2) or bought (3) at ``time`` (ms)."""

    product_id: Id
    category: Id
    level: Annotated[int, Meta(ge=VIEW, le=PURCHASE)]
    time: Millis


# --- the part of an item event's JSON the recommender reads -------------------------------

Timestamp = (
    Millis | Annotated[float, Meta(ge=0, lt=_LATEST_MS)] | Annotated[datetime, Meta(tz=True)]
)


class _Product(msgspec.Struct):
    product_id: Id
    category: Id


class _Order(msgspec.Struct):
    items: Annotated[list[_Product], Meta(min_length=1)]


class _Item(msgspec.Struct, tag_field="type"):
    timestamp: Timestamp


class _Viewed(_Item, tag="product_viewed"):
    properties: _Product


class _Added(_Item, tag="product_added"):
    properties: _Product


class _Ordered(_Item, tag="order_completed"):
    properties: _Order


def millis(timestamp: int | float | datetime) -> int:
    """Epoch milliseconds of a contract timestamp (int or float ms, or an aware datetime)."""
    if type(timestamp) is int:
        return timestamp
    if isinstance(timestamp, datetime):
        return int(timestamp.timestamp() * 1000 + 0.5)
    return int(timestamp + 0.5)


def interactions(event: Any) -> list[Interaction]:
    """The product interactions of an item event; [] for other types.

    A dict is checked for what is read from it; a malformed one raises ``ValueError``
    naming the event and the field.
    """
    if type(event) is list:
        return event  # already read: an ItemEvent's items
    # A struct (the worker's events) first: a plain type check before the ABC's.
    struct = isinstance(event, msgspec.Struct)
    if not struct and isinstance(event, Mapping):
        level = LEVEL_OF_TYPE.get(event.get("type"))  # type: ignore[arg-type]
        if level is None:
            return []
        try:
            read = msgspec.convert(event, _Viewed | _Added | _Ordered)
        except msgspec.ValidationError as exc:
            raise ValueError(f"item event {event.get('event_id')!r}: {exc}") from None
        t = millis(read.timestamp)
        properties: Any = read.properties
    else:
        level = LEVEL_OF_TYPE.get(event.type)
        if level is None:
            return []
        at = getattr(event, "at", None)  # the worker's structs carry it; pydantic models not
        t = at if at is not None else millis(event.timestamp)
        properties = event.properties
    if level == PURCHASE:
        # one interaction per product, even when an order lists it on two lines
        products = {i.product_id: i.category for i in properties.items}
        return [Interaction(p, c, PURCHASE, t) for p, c in products.items()]
    return [Interaction(properties.product_id, properties.category, level, t)]
