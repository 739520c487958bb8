"""The profile as people and services read it: JSON, windows computed at ``as_of``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdpulse.privacy.consent import PURPOSES
from cdpulse.profile import custom, send_hours, windows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules

_HOUR = 3_600_000
_HOURS: dict[int, str] = {}  # hour since the epoch -> "YYYY-MM-DDTHH:", as met


def iso(millis: int | None) -> str | None:
    """RFC 3339 text (UTC, milliseconds) of an epoch-milliseconds time.

    A profile document shows about seven times; with ``datetime`` each cost ~3 µs. The
    text of an hour is made once (``datetime``, so the calendar is Python's) and the
    minutes, seconds and milliseconds are exact integer arithmetic on it."""
    if millis is None:
        return None
    hour, within = divmod(millis, _HOUR)
    prefix = _HOURS.get(hour)
    if prefix is None:
        if len(_HOURS) >= 100_000:  # ~11 years of distinct hours: start over
            _HOURS.clear()
        prefix = _HOURS[hour] = datetime.fromtimestamp(hour * 3600, tz=UTC).strftime("%Y-%m-%dT%H:")
    minutes, within = divmod(within, 60_000)
    seconds, ms = divmod(within, 1000)
    return f"{prefix}{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def in_cart(profile: Profile) -> list[str]:
    """The products of the open cart (``cart_view``'s items), without rendering it."""
    if not profile.cart:
        return []  # most profiles, once per item event (the recommender's context)
    return [
        product_id
        for product_id, line in sorted(profile.cart.items())
        if line.price_at >= 0 and sum(delta for _, delta in line.changes) > 0
    ]


def cart_view(profile: Profile) -> dict[str, Any]:
    """The open cart: items with a positive net quantity after the last order."""
    items: list[dict[str, Any]] = []
    added: list[int] = []
    value = 0.0
    for product_id, line in sorted(profile.cart.items()):
        quantity = sum(delta for _, delta in line.changes)
        if quantity <= 0 or line.price_at < 0:
            continue  # removed again, or only ever removed (no price known; see in_cart)
        added += [t for t, delta in line.changes if delta > 0]
        value += line.price * quantity
        items.append(
            {
                "product_id": product_id,
                "category": line.category,
                "price": line.price,
                "quantity": quantity,
            }
        )
    return {"items": items, "value": round(value, 2), "since": iso(min(added, default=None))}


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hour_name(hour_of_week: int) -> str:
    """'Thu 19h' for hour 3 * 24 + 19 of the week (0 = Monday 00h, the customer's time)."""
    day, hour = divmod(hour_of_week, 24)
    return f"{DAY_NAMES[day]} {hour:02d}h"


def send_hours_view(profile: Profile, as_of: int) -> dict[str, int]:
    """The decayed activity per local hour of the week at ``as_of`` (``send_hours``),
    the hours with any, Monday first."""
    weights = send_hours.weights(profile.send_hours, as_of) if profile.send_hours else {}
    return {hour_name(h): weights[h] for h in sorted(weights)}


def affinity_view(profile: Profile, as_of: int, rules: Rules) -> dict[str, float]:
    """Category affinity decayed to ``as_of``, strongest first."""
    factor = 0.5 ** (max(0, as_of - profile.affinity_ref) / rules.affinity_half_life)
    scores = {c: round(s * factor, 6) for c, s in profile.affinity.items()}
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))


def render(profile: Profile, as_of: int, rules: Rules) -> dict[str, Any]:
    """The JSON document served by ``GET /v1/profiles/{id}`` and ``cdpulse profile``."""
    as_of = max(as_of, profile.last_seen)
    net = profile.revenue - profile.refunded
    recency = (
        None
        if profile.last_order_at is None
        else round((as_of - profile.last_order_at) / windows.DAY, 4)
    )
    return {
        "id": profile.id,
        "customer_id": profile.customer_id,
        "anonymous_ids": list(profile.anonymous_ids),
        "as_of": iso(as_of),
        # None for a profile minimised by withheld analytics consent: it keeps no times.
        "first_seen": iso(profile.first_seen) if profile.events else None,
        "last_seen": iso(profile.last_seen) if profile.events else None,
        "events": profile.events,
        "counts": dict(sorted(profile.counts.items())),
        "channels": dict(sorted(profile.channels.items())),
        "sessions": profile.sessions_closed + len(profile.spans),
        "orders": profile.orders,
        "revenue": round(profile.revenue, 2),
        "average_order_value": round(profile.revenue / profile.orders, 2)
        if profile.orders
        else 0.0,
        "first_order_at": iso(profile.first_order_at),
        "last_order_at": iso(profile.last_order_at),
        "refunds": {"count": profile.refunds, "amount": round(profile.refunded, 2)},
        "cart": cart_view(profile),
        "category_affinity": affinity_view(profile, as_of, rules),
        "recently_viewed": [
            p for p, _ in sorted(profile.viewed.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "windows": windows.read(profile.buckets, as_of),
        "send_hours": send_hours_view(profile, as_of),
        # custom event name -> total and per window (registered names even when never sent)
        "custom_counts": custom.view(profile, as_of, rules.custom_schemas.names),
        "rfm": {"recency_days": recency, "frequency": profile.orders, "monetary": round(net, 2)},
        "consent": {
            purpose: profile.consent[purpose][1] if purpose in profile.consent else None
            for purpose in PURPOSES
        },
        "identified_at": iso(profile.identified_at),
        "traits": {name: value for name, (_, value) in sorted(profile.traits.items())},
    }
