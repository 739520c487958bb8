"""The churn feature vector of a profile at the end of a day, and each feature in words.

Every feature comes from the profile's identified activity per day (``churn_days``:
events, orders and revenue of the events that carry its customer_id, kept 60 days) and
its first identified time, read as of the end of day ``day``. A past day's counts no
longer change once the watermark has passed it, and a visitor merged in later does not
touch them, so the features of a past day are the same whenever, and in whatever
order, they are read: live, in ``cdpulse evaluate``, or in a test. Scoring "now" reads
today's vector.

>>> from cdpulse.profile.model import Profile
>>> p = Profile(id="C-1", churn_days={0: [1, 0, 0.0]}, churn_first_seen=0)
>>> x = churn_features(p, day=41 * DAY)
>>> x["days_since_last_visit"], describe("days_since_last_visit", x)
(41.0, 'no visit for 41 days')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY, TREND_SPAN

# Day buckets reach back TREND_SPAN: anything older reads as "at least that long ago".
HORIZON_DAYS = TREND_SPAN / DAY
MAX_TENURE_DAYS = 365.0


@dataclass(frozen=True, slots=True)
class Feature:
    """One input of the churn model: its meaning and how to phrase a value of it."""

    name: str
    meaning: str
    phrase: Callable[[dict[str, float]], str]


def _pct(change: float) -> str:
    return f"{abs(change) * 100:.0f}%"


def _trend_words(what: str, change: float) -> str:
    return f"{what} {'down' if change < 0 else 'up'} {_pct(change)} vs previous 30 days"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "days_since_last_visit",
        "days since the last day with any event (60 when longer ago)",
        lambda x: (
            "visited today"
            if x["days_since_last_visit"] == 0
            else f"no visit for {x['days_since_last_visit']:.0f} days"
        ),
    ),
    Feature(
        "days_since_last_order",
        "days since the last day with an order (60 when longer ago or never)",
        lambda x: (
            "no order in 60 days"
            if x["days_since_last_order"] >= HORIZON_DAYS
            else f"no order for {x['days_since_last_order']:.0f} days"
        ),
    ),
    Feature(
        "tenure_days",
        "days since first seen",
        lambda x: f"customer for {x['tenure_days']:.0f} days",
    ),
    Feature(
        "active_days_30d",
        "days with activity among the last 30",
        lambda x: f"active on {x['active_days_30d']:.0f} of the last 30 days",
    ),
    Feature(
        "events_7d",
        "events in the last 7 days",
        lambda x: f"{x['events_7d']:.0f} events this week",
    ),
    Feature(
        "events_30d",
        "events in the last 30 days",
        lambda x: f"{x['events_30d']:.0f} events in 30 days",
    ),
    Feature(
        "visit_trend",
        "events in the last 30 days vs the 30 before, as a relative change",
        lambda x: _trend_words("visits", x["visit_trend"]),
    ),
    Feature(
        "orders_30d",
        "orders in the last 30 days",
        lambda x: f"{x['orders_30d']:.0f} orders in 30 days",
    ),
    Feature(
        "order_trend",
        "orders in the last 30 days vs the 30 before, as a relative change",
        lambda x: _trend_words("orders", x["order_trend"]),
    ),
    Feature(
        "log_revenue_60d",
        "log(1 + revenue of the last 60 days)",
        lambda x: f"spent {math.expm1(x['log_revenue_60d']):.0f} in 60 days",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}


def _trend(recent: float, before: float) -> float:
    """Relative change; +1 smoothing keeps sparse customers finite."""
    return (recent - before) / (before + 1.0)


def active_days(profile: Profile) -> list[int]:
    """Starts of the days (epoch ms) on which the profile has events, oldest first."""
    return sorted(start for start, cell in profile.churn_days.items() if cell[0] > 0)


def churn_features(profile: Profile, day: int) -> dict[str, float]:
    """The features as of the end of the day starting at ``day`` (epoch ms, day-aligned).

    One pass over the kept days (this runs for every changed profile of every batch).
    """
    first = profile.churn_first_seen if profile.churn_first_seen is not None else day
    last_visit = last_order = None
    active = 0
    e7 = e30 = e60 = o30 = o60 = revenue = 0.0
    for start, (events, orders, spent) in profile.churn_days.items():
        if start > day:
            continue
        age = (day - start) // DAY  # 0: the day itself
        if events > 0:
            last_visit = start if last_visit is None or start > last_visit else last_visit
            if age <= 29:
                active += 1
        if orders > 0:
            last_order = start if last_order is None or start > last_order else last_order
        if age <= 59:
            revenue += spent
            if age <= 29:
                e30 += events
                o30 += orders
                if age <= 6:
                    e7 += events
            else:
                e60 += events
                o60 += orders
    return {
        "days_since_last_visit": min(HORIZON_DAYS, (day - last_visit) / DAY)
        if last_visit is not None
        else HORIZON_DAYS,
        "days_since_last_order": min(HORIZON_DAYS, (day - last_order) / DAY)
        if last_order is not None
        else HORIZON_DAYS,
        "tenure_days": min(MAX_TENURE_DAYS, max(0.0, (day + DAY - first) / DAY)),
        "active_days_30d": float(active),
        "events_7d": float(e7),
        "events_30d": float(e30),
        "visit_trend": _trend(e30, e60),
        "orders_30d": float(o30),
        "order_trend": _trend(o30, o60),
        "log_revenue_60d": math.log1p(max(0.0, revenue)),
    }


def describe(name: str, x: dict[str, float]) -> str:
    """The plain-words reason for feature ``name`` at the values ``x``."""
    return _BY_NAME[name].phrase(x)
