"""What a recommender learns from an event: which products, how strongly, when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdpulse.contract.mirror import (
    Event,
    OrderCompletedEvent,
    ProductAddedEvent,
    ProductViewedEvent,
    from_dict,
)

VIEW, CART, PURCHASE = 1, 2, 3
LEVEL_OF_TYPE = {"product_viewed": VIEW, "product_added": CART, "order_completed": PURCHASE}
LEVEL_NAMES = {VIEW: "viewed", CART: "added to cart", PURCHASE: "bought"}


@dataclass(frozen=True, slots=True)
class Interaction:
    """One product a customer viewed (level 1), added (2) or bought (3) at ``time`` (ms)."""

    product_id: str
    category: str
    level: int
    time: int


def interactions(event: Event | Mapping[str, Any]) -> list[Interaction]:
    """The product interactions of a contract event or its dict; [] for other types.

    A dict is converted first, so a malformed one raises ``ValueError``.
    """
    if isinstance(event, Mapping):
        if event.get("type") not in LEVEL_OF_TYPE:
            return []
        event = from_dict(event)
    t = event.at
    if isinstance(event, ProductViewedEvent | ProductAddedEvent):
        p = event.properties
        return [Interaction(p.product_id, p.category, LEVEL_OF_TYPE[event.type], t)]
    if isinstance(event, OrderCompletedEvent):
        # one interaction per product, even when an order lists it on two lines
        items = {i.product_id: i.category for i in event.properties.items}
        return [Interaction(p, c, PURCHASE, t) for p, c in items.items()]
    return []
