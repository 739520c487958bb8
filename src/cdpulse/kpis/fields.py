"""The names of the KPI counters: periods, metrics, dimensions, and the day flags.

Counters live in one hash per period: a day (every metric), an ISO week (the distinct
metrics, which do not add up over days) or a cohort (the customers whose first order
fell in that week). A hash field is a metric, alone for the total or with one dimension:
``orders``, ``orders|c:web`` (channel), ``orders|s:vip`` (segment), ``orders|k:spring``
(the campaign of the visit), ``orders|f:spring`` and ``orders|l:spring`` (first and
last campaign touch), ``email_opens|e:news-12`` (newsletter), ``offers_shown|o:10off``.
Money is counted in cents, so sums are exact integers.

>>> day_name(20458), week_of(20458), period_name(WEEK, week_of(20458))
('2026-01-05', 20458, 'week:2026-01-05')
>>> field("orders", CAMPAIGN, "spring"), flag_metric(VISIT, 1 + CHANNELS.index("app"))
('orders|k:spring', 'visitors|c:app')
"""

from __future__ import annotations

import functools
from datetime import date, timedelta
from typing import get_args

from cdpulse.contract.mirror import Channel, Context

DAY_MS = 86_400_000
CHANNELS: tuple[str, ...] = get_args(Channel)

# --- periods ------------------------------------------------------------------------------

DAY, WEEK, COHORT = 0, 1, 2
PERIODS = ("day", "week", "cohort")
_EPOCH = date(1970, 1, 1)


def week_of(day: int) -> int:
    """The Monday (epoch day) of the ISO week holding epoch day ``day``."""
    return day - (day + 3) % 7  # epoch day 0 was a Thursday


@functools.lru_cache(maxsize=4096)
def day_name(day: int) -> str:
    """Epoch day as an ISO date."""
    return (_EPOCH + timedelta(days=day)).isoformat()


def epoch_day(name: str) -> int:
    """An ISO date as an epoch day (raises ValueError naming the text)."""
    try:
        return (date.fromisoformat(name) - _EPOCH).days
    except ValueError:
        raise ValueError(f"{name!r} is not a date; use YYYY-MM-DD") from None


def period_name(kind: int, day: int) -> str:
    """The hash a period's counters live in, under the store's KPI prefix."""
    return f"{PERIODS[kind]}:{day_name(day)}"


# --- dimensions -----------------------------------------------------------------------------

CHANNEL, SEGMENT, CAMPAIGN, FIRST_TOUCH, LAST_TOUCH, NEWSLETTER, OFFER = (
    "c",
    "s",
    "k",
    "f",
    "l",
    "e",
    "o",
)
DIMENSIONS = {
    "channel": CHANNEL,
    "segment": SEGMENT,
    "campaign": CAMPAIGN,
    "first_touch": FIRST_TOUCH,
    "last_touch": LAST_TOUCH,
    "newsletter": NEWSLETTER,
    "offer": OFFER,
}
# Demand (``cdpulse.models.forecast``): not KPI dimensions (``DIMENSIONS``), the series
# the demand forecasts read: by line item ``units|g:shoes``, ``revenue_cents|p:P-1``, and
# the shop's orders and revenue (``DEMAND_ORDERS``). Every order counts in them, whatever
# the customer's consent (``kpis.fold``), unlike ``orders`` and ``revenue_cents``.
CATEGORY, PRODUCT, DEMAND = "g", "p", "d"
NO_CAMPAIGN = "(none)"  # an order no campaign touched before it
REFUSED = "_refused"  # counts a full hash refused (``store.kpis``, ``write.lua``)
LABEL_CHARS = 128  # a dimension value is cut to this: clients name campaigns and offers


def field(metric: str, dimension: str, value: str) -> str:
    return f"{metric}|{dimension}:{value[:LABEL_CHARS]}"


def split(name: str) -> tuple[str, str, str]:
    """A hash field as (metric, dimension, value); ("visitors", "", "") for a total."""
    metric, _, rest = name.partition("|")
    dimension, _, value = rest.partition(":")
    return metric, dimension, value


def campaign_of(context: Context | None) -> str | None:
    """The campaign an event's ``context.campaign`` names, ``source/medium/name`` (empty
    parts left empty), or None when it names none."""
    if context is None or context.campaign is None:
        return None
    c = context.campaign
    if c.source is None and c.medium is None and c.name is None:
        return None
    return f"{c.source or ''}/{c.medium or ''}/{c.name or ''}"[:LABEL_CHARS]


# --- day flags ------------------------------------------------------------------------------
# What a customer did on a day, one byte per group: group 0 whatever the channel, group
# 1 + i through channel CHANNELS[i]. A distinct counter is the number of customers with
# the flag set, so it moves by one only when a flag is set for the first time.

VISIT, IDENTIFIED, VIEW, CART, CHECKOUT, ORDER = 1, 2, 4, 8, 16, 32
GROUPS = 1 + len(CHANNELS)
FLAG_METRICS = {
    VISIT: "visitors",  # any clickstream event (a custom one too) or order
    IDENTIFIED: "customers",  # ... carrying customer_id: identified visitors
    VIEW: "viewers",  # the funnel, a customer once per day and step
    CART: "cart_adders",
    CHECKOUT: "checkout_starters",
    ORDER: "buyers",
}
NEW_VISITORS = "new_visitors"  # visitors whose first visit was that day (or week)
REPEAT_BUYERS = "repeat_buyers"  # buyers who had ordered on an earlier day
COHORT_SIZE = "customers"
DISTINCT = (*FLAG_METRICS.values(), NEW_VISITORS, REPEAT_BUYERS)


def _group_field(metric: str, group: int) -> str:
    return metric if group == 0 else field(metric, CHANNEL, CHANNELS[group - 1])


# [flag][group] -> field name, built once: the fold looks names up, never formats them.
_FLAG_FIELDS = {
    flag: tuple(_group_field(metric, g) for g in range(GROUPS))
    for flag, metric in FLAG_METRICS.items()
}
NEW_FIELDS = tuple(_group_field(NEW_VISITORS, g) for g in range(GROUPS))
REPEAT_FIELDS = tuple(_group_field(REPEAT_BUYERS, g) for g in range(GROUPS))


def flag_metric(flag: int, group: int) -> str:
    """The field counting customers with ``flag`` in ``group``."""
    return _FLAG_FIELDS[flag][group]


def flags_of(steps: int, channel: int) -> int:
    """Day flags for ``steps`` done through channel index ``channel``."""
    return steps | (steps << (8 * (channel + 1)))


# --- additive metrics -----------------------------------------------------------------------

SESSIONS = "sessions"
PRODUCT_VIEWS, CART_ADDS, CHECKOUTS, ORDERS = "product_views", "cart_adds", "checkouts", "orders"
REVENUE, REFUNDS, REFUNDED = "revenue_cents", "refunds", "refunded_cents"
UNITS = "units"  # line items' quantities, by category and by product only
DEMAND_ORDERS, DEMAND_REVENUE = f"{ORDERS}|{DEMAND}:shop", f"{REVENUE}|{DEMAND}:shop"
ORDER_GAPS, ORDER_GAP_MS = "order_gaps", "order_gap_ms"  # repeat orders, time since the last
EMAIL_OPENS, EMAIL_CLICKS = "email_opens", "email_clicks"
EMAIL_OPENERS, EMAIL_CLICKERS = "email_openers", "email_clickers"  # once per newsletter
RECO_VIEWS, RECO_ORDERS, RECO_REVENUE = "reco_views", "reco_orders", "reco_revenue_cents"
OFFERS_SHOWN, OFFER_VIEWS, OFFER_ORDERS = "offers_shown", "offer_views", "offer_orders"
OFFER_REVENUE, OFFERS_REDEEMED = "offer_revenue_cents", "offers_redeemed"
# Cohort cells: ``active:<k>``, ``ordering:<k>`` for the k-th week after the first order.
ACTIVE, ORDERING = "active", "ordering"


def cents(amount: float) -> int:
    """Money as whole cents (what the counters add)."""
    return round(amount * 100)
