"""The ground truth of trigger situations, computed from raw events with a plain linear pass.

Written apart from the engine: nothing here comes from ``cdpulse.triggers`` or
``cdpulse.profile``. For each customer the oracle sorts its identified events by time and
reads the specification off them directly:

- cart abandoned: adds form one cart while each comes within the wait of the previous add
  and no checkout or order came in between; the cart is abandoned when it still holds
  something at its deadline (last add + wait) and no checkout or order fell in
  [first add, deadline]. A cart left open carries its items into the next one.
- high intent: sessions are identified clickstream events less than the gap apart; a
  session fires at the view that brings one product to ``views`` views, once.
- cross-sell: every identified order, about the products in it.

A situation is decided when its time is at or before the final low watermark; it fires
when the customer's newest marketing answer is a grant given at or before that time, and
lands in the holdout when the hash of its trigger id says so.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.oracle import SESSION_TYPES

MINUTE = 60_000
DAY = 86_400_000
HOLDOUT = 0.25
WINDOW = 2 * DAY  # attribution window

# The rules the oracle's parameters describe (wait 30 minutes, 3 views, the gap of
# sessions), with caps and cooldowns out of the way: the outcomes are then decided by
# consent and holdout alone. The offers go to the cart rule.
OFFERS = ["reminder", "free_shipping", "discount_10"]
RULES: dict[str, Any] = {
    "caps": {"per_day": 1000, "per_week": 1000},
    "rules": [
        {
            "name": name,
            "kind": name,
            "cooldown_hours": 0,
            "holdout": HOLDOUT,
            "attribution_days": WINDOW / DAY,
            **extra,
        }
        for name, extra in (
            ("cart_abandoned", {"offers": OFFERS}),
            ("high_intent", {}),
            ("cross_sell", {}),
        )
    ],
}


@dataclass(frozen=True)
class Situation:
    rule: str
    customer_id: str
    key: str
    at: int
    products: tuple[str, ...]

    @property
    def trigger_id(self) -> str:
        return f"{self.rule}:{self.customer_id}:{self.key}"


def millis(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def situations(
    events: Iterable[dict[str, Any]],
    *,
    wait: int = 30 * MINUTE,
    gap: int = 30 * MINUTE,
    views: int = 3,
) -> list[Situation]:
    """Every cart_abandoned, high_intent and cross_sell situation in ``events``."""
    by_customer: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event in events:
        if event.get("customer_id"):
            by_customer[event["customer_id"]].append((millis(event["timestamp"]), event))
    out: list[Situation] = []
    for customer, timeline in by_customer.items():
        timeline.sort(key=lambda pair: pair[0])
        out += _carts(customer, timeline, wait)
        out += _intent(customer, timeline, gap, views)
        out += [
            Situation("cross_sell", customer, e["properties"]["order_id"], t, _products(e))
            for t, e in timeline
            if e["type"] == "order_completed"
        ]
    return out


def marketing_consent(events: Iterable[dict[str, Any]]) -> dict[str, tuple[int, bool]]:
    """Customer -> its newest marketing answer (time, granted), visitors' answers included."""
    events = list(events)
    alias = {
        e["anonymous_id"]: e["customer_id"]
        for e in sorted(events, key=lambda e: millis(e["timestamp"]), reverse=True)
        if e["type"] == "identify" and e.get("anonymous_id")
    }
    answers: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for e in events:
        if e["type"] != "consent_updated" or "marketing" not in e["properties"]["purposes"]:
            continue
        customer = e.get("customer_id") or alias.get(e.get("anonymous_id", ""))
        if customer is not None:
            answers[customer].append(
                (millis(e["timestamp"]), e["properties"]["purposes"]["marketing"])
            )
    # the newest answer wins; at the same instant a refusal wins
    return {c: max(a, key=lambda answer: (answer[0], not answer[1])) for c, a in answers.items()}


def in_holdout(trigger_id: str, share: float) -> bool:
    digest = hashlib.blake2b(trigger_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def outcome(situation: Situation, consent: dict[str, tuple[int, bool]], holdout: float) -> str:
    answer = consent.get(situation.customer_id)
    if answer is None or not answer[1] or answer[0] > situation.at:
        return "no_consent"
    return "holdout" if in_holdout(situation.trigger_id, holdout) else "fired"


def _carts(customer: str, timeline: list[tuple[int, dict[str, Any]]], wait: int) -> list[Situation]:
    closers = [t for t, e in timeline if e["type"] in ("checkout_started", "order_completed")]
    carts: list[dict[str, Any]] = []  # opened_by, opened, last, items, closed
    for t, e in timeline:
        if e["type"] == "product_added":
            product, quantity = e["properties"]["product_id"], e["properties"].get("quantity", 1)
            cart = carts[-1] if carts else None
            if cart is not None and t <= cart["last"] + wait and not _closed(cart, t, closers):
                cart["items"][product] = cart["items"].get(product, 0) + quantity
                cart["last"] = t
                continue
            carried = {}
            if cart is not None and not _closed(cart, cart["last"] + wait, closers):
                carried = dict(cart["items"])
            carried[product] = carried.get(product, 0) + quantity
            carts.append({"by": e["event_id"], "opened": t, "last": t, "items": carried})
        elif e["type"] == "product_removed" and carts:
            cart = carts[-1]
            if t <= cart["last"] + wait and not _closed(cart, t, closers):
                product = e["properties"]["product_id"]
                left = cart["items"].get(product, 0) - e["properties"].get("quantity", 1)
                if left > 0:
                    cart["items"][product] = left
                else:
                    cart["items"].pop(product, None)
    return [
        Situation("cart_abandoned", customer, c["by"], c["last"] + wait, tuple(sorted(c["items"])))
        for c in carts
        if c["items"] and not _closed(c, c["last"] + wait, closers)
    ]


def _closed(cart: dict[str, Any], until: int, closers: list[int]) -> bool:
    return any(cart["opened"] <= t <= until for t in closers)


def _intent(
    customer: str, timeline: list[tuple[int, dict[str, Any]]], gap: int, needed: int
) -> list[Situation]:
    out = []
    session, last, counts, fired = "", None, {}, False
    for t, e in timeline:
        if e["type"] not in SESSION_TYPES:
            continue
        if last is None or t - last > gap:
            session, counts, fired = e["event_id"], {}, False
        last = t
        if e["type"] != "product_viewed":
            continue
        product = e["properties"]["product_id"]
        counts[product] = counts.get(product, 0) + 1
        if counts[product] >= needed and not fired:
            fired = True
            out.append(Situation("high_intent", customer, session, t, (product,)))
    return out


def _products(order: dict[str, Any]) -> tuple[str, ...]:
    """The ordered products, each once, in order."""
    return tuple(dict.fromkeys(item["product_id"] for item in order["properties"]["items"]))


def conversions(events: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Customer -> times of its identified orders and offer redemptions."""
    out: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.get("customer_id") and e["type"] in ("order_completed", "offer_redeemed"):
            out[e["customer_id"]].append(millis(e["timestamp"]))
    return out


def converted(situation: Situation, conversions: dict[str, list[int]], window: int) -> bool:
    """Whether the customer ordered or redeemed in (at, at + window]."""
    at = situation.at
    return any(at < t <= at + window for t in conversions.get(situation.customer_id, []))
