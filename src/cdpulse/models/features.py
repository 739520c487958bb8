"""The churn feature vector of a profile at an event time, and how to say each in words.

Every feature is computed from the profile alone at ``as_of`` (event time), so the
worker, ``cdpulse evaluate`` and the tests derive the same vector. Each feature carries
a sentence template: a model's reasons are its largest contributions, told in words.

>>> from cdpulse.profile.model import Profile
>>> p = Profile(id="C-1", first_seen=0, last_seen=0, events=1)
>>> x = churn_features(p, as_of=41 * DAY)
>>> x["days_since_last_visit"], describe("days_since_last_visit", x)
(41.0, 'no visit for 41 days')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from cdpulse.profile import windows
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY

# Recency caps: past these, more days say nothing new and would dominate a linear model.
MAX_DAYS = 365.0


@dataclass(frozen=True, slots=True)
class Feature:
    """One input of the churn model: its meaning and how to phrase a value of it."""

    name: str
    meaning: str
    phrase: Callable[[dict[str, float]], str]


def _pct(change: float) -> str:
    return f"{abs(change) * 100:.0f}%"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "days_since_last_visit",
        "days since the last event of any kind",
        lambda x: f"no visit for {x['days_since_last_visit']:.0f} days",
    ),
    Feature(
        "days_since_last_order",
        "days since the last order (365 when none)",
        lambda x: (
            "never ordered"
            if x["orders"] == 0
            else f"no order for {x['days_since_last_order']:.0f} days"
        ),
    ),
    Feature(
        "tenure_days",
        "days since first seen",
        lambda x: f"customer for {x['tenure_days']:.0f} days",
    ),
    Feature("orders", "orders ever", lambda x: f"{x['orders']:.0f} orders so far"),
    Feature(
        "log_revenue",
        "log(1 + revenue)",
        lambda x: f"lifetime spend {math.expm1(x['log_revenue']):.0f}",
    ),
    Feature(
        "events_7d", "events in the last 7 days", lambda x: f"{x['events_7d']:.0f} events this week"
    ),
    Feature(
        "events_30d",
        "events in the last 30 days",
        lambda x: f"{x['events_30d']:.0f} events in 30 days",
    ),
    Feature(
        "visit_trend",
        "events in the last 30 days vs the 30 before, as a relative change",
        lambda x: (
            f"visits {'down' if x['visit_trend'] < 0 else 'up'} "
            f"{_pct(x['visit_trend'])} vs previous 30 days"
        ),
    ),
    Feature(
        "order_trend",
        "orders in the last 30 days vs the 30 before, as a relative change",
        lambda x: (
            f"orders {'down' if x['order_trend'] < 0 else 'up'} "
            f"{_pct(x['order_trend'])} vs previous 30 days"
        ),
    ),
    Feature(
        "sessions",
        "visits ever (30-minute sessions)",
        lambda x: f"{x['sessions']:.0f} visits so far",
    ),
    Feature(
        "cart_open",
        "1 when the cart holds items",
        lambda x: "items left in the cart" if x["cart_open"] else "empty cart",
    ),
    Feature(
        "abandoned_checkouts",
        "checkouts started minus orders (at least 0)",
        lambda x: f"{x['abandoned_checkouts']:.0f} abandoned checkouts",
    ),
    Feature(
        "email_engagement",
        "email opens and clicks per event",
        lambda x: (
            "rarely reads emails" if x["email_engagement"] < 0.05 else "reads emails regularly"
        ),
    ),
    Feature("refunds", "refunds ever", lambda x: f"{x['refunds']:.0f} refunds"),
    Feature(
        "app_share",
        "share of events from the app",
        lambda x: f"{x['app_share'] * 100:.0f}% of activity in the app",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}


def _trend(recent: float, before: float) -> float:
    """Relative change, in [-1, 1] for drops; +1 smoothing so sparse customers stay finite."""
    return (recent - before) / (before + 1.0)


def churn_features(profile: Profile, as_of: int) -> dict[str, float]:
    """The feature vector of ``profile`` at event time ``as_of`` (epoch ms)."""
    as_of = max(as_of, profile.last_seen)
    today = (as_of // DAY) * DAY
    buckets = profile.buckets
    e7, _, _ = windows.totals(buckets, DAY, today - 6 * DAY, today)
    e30, o30, _ = windows.totals(buckets, DAY, today - 29 * DAY, today)
    e60, o60, _ = windows.totals(buckets, DAY, today - 59 * DAY, today - 30 * DAY)
    counts = profile.counts
    last_order = profile.last_order_at
    return {
        "days_since_last_visit": min(MAX_DAYS, (as_of - profile.last_seen) / DAY),
        "days_since_last_order": MAX_DAYS
        if last_order is None
        else min(MAX_DAYS, (as_of - last_order) / DAY),
        "tenure_days": min(MAX_DAYS, (as_of - profile.first_seen) / DAY),
        "orders": float(profile.orders),
        "log_revenue": math.log1p(max(0.0, profile.revenue)),
        "events_7d": float(e7),
        "events_30d": float(e30),
        "visit_trend": _trend(e30, e60),
        "order_trend": _trend(o30, o60),
        "sessions": float(profile.sessions_closed + len(profile.spans)),
        "cart_open": 1.0
        if any(sum(d for _, d in line.changes) > 0 for line in profile.cart.values())
        else 0.0,
        "abandoned_checkouts": float(
            max(0, counts.get("checkout_started", 0) - counts.get("order_completed", 0))
        ),
        "email_engagement": (counts.get("email_opened", 0) + counts.get("email_clicked", 0))
        / max(1, profile.events),
        "refunds": float(profile.refunds),
        "app_share": profile.channels.get("app", 0) / max(1, profile.events),
    }


def describe(name: str, x: dict[str, float]) -> str:
    """The plain-words reason for feature ``name`` at the values ``x``."""
    return _BY_NAME[name].phrase(x)
