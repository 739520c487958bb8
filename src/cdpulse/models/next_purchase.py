"""When a customer will order next: their repurchase cycle and the expected date.

The cycle is the customer's own mean gap between orders, shrunk towards the population's
by the BG/NBD fit (``models/clv``): while alive, a customer buys at a rate lambda drawn
from Gamma(r, alpha); after x repeat orders over t_x days since the first, lambda's
posterior is Gamma(r + x, alpha + t_x), whose mean gives the cycle
(alpha + t_x) / (r + x) days. With many orders it is the customer's own mean gap t_x / x;
with one order it is the population's alpha / r. Without a fit, the own mean gap alone
(two orders at least). The next order is expected one cycle after the last; a negative
``next_order_in_days`` says it is overdue by that many days, and P(alive) (from the same
fit) says how much to trust that it comes at all.

Everything is read from the profile's order fields (``orders``, ``first_order_at``,
``last_order_at``), which are exact under redelivery, so no fold of its own is needed.

>>> from cdpulse.models.clv import BGNBDParams
>>> from cdpulse.profile.model import Profile
>>> params = BGNBDParams(r=0.243, alpha=30.898, a=0.793, b=2.426)  # CDNOW, in days
>>> p = Profile(id="C-1", orders=5, first_order_at=0, last_order_at=120 * DAY)
>>> view = next_purchase_view(p, params, as_of=130 * DAY)
>>> view["cycle_days"], view["next_order_in_days"]
(35.6, 25.6)
>>> view["reasons"][0]
'5 orders, 30 days apart on average'
>>> next_purchase_view(Profile(id="C-2", orders=1, first_order_at=0, last_order_at=0),
...                    None, as_of=DAY) is None
True
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from cdpulse.models.clv.bgnbd import BGNBDParams
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile
from cdpulse.profile.view import iso
from cdpulse.profile.windows import DAY


@dataclass(frozen=True, slots=True)
class NextPurchase:
    """A customer's repurchase cycle and next expected order (times in epoch ms)."""

    cycle_days: float
    expected_at: int
    in_days: float  # from ``as_of``; negative: overdue
    p_alive: float | None
    reasons: list[str]


def cycle(profile: Profile, params: BGNBDParams | None) -> float | None:
    """The repurchase cycle of ``profile`` in days (module docstring); None when nothing
    says how often they buy: no order, or one and no fit."""
    first, last, orders = profile.first_order_at, profile.last_order_at, profile.orders
    if orders < 1 or first is None or last is None:
        return None
    x = orders - 1
    t_x = (last - first) / DAY
    if params is not None:
        return (params.alpha + t_x) / (params.r + x)
    return t_x / x if x else None


def next_purchase(profile: Profile, params: BGNBDParams | None, as_of: int) -> NextPurchase | None:
    """The next purchase of ``profile`` at ``as_of``; None when nothing says when."""
    days = cycle(profile, params)
    first, last, orders = profile.first_order_at, profile.last_order_at, profile.orders
    if days is None or first is None or last is None:
        return None
    x = orders - 1
    t_x = (last - first) / DAY
    reasons = [
        f"{orders} orders, {t_x / x:.0f} days apart on average"
        if x
        else f"one order so far, {(max(as_of, last) - last) / DAY:.0f} days ago"
    ]
    p_alive: float | None = None
    if params is not None:
        T = (max(as_of, last) - first) / DAY
        p_alive = float(params.p_alive(x, t_x, T))
        population = params.alpha / params.r
        reasons.append(f"customers like them order every {population:.0f} days")
        reasons.append(f"P(still buying) {p_alive:.0%}")
    expected = last + round(days * DAY)
    in_days = (expected - as_of) / DAY
    if in_days < 0:
        reasons.append(f"overdue by {-in_days:.0f} days")
    return NextPurchase(round(days, 1), expected, round(in_days, 1), p_alive, reasons)


# The live quality's counts (``observe_order``): orders measured, and per predictor the
# sum of absolute errors in whole seconds. Integers, so a sum is the same however the
# orders were cut into batches (float sums are not), and exact on a Prometheus counter.
MEASURED = "next_purchase_orders"
ERROR = "next_purchase_error_s:"
PREDICTORS = ("model", "own_gap")


def observe_order(
    profile: Profile, params: BGNBDParams | None, t: int, counts: Counter[str]
) -> None:
    """Count how far an order at ``t`` fell from the next order ``profile`` expected
    before it, with ``params`` (the fit the profile read uses) and with the customer's own
    mean gap: the live quality on /metrics. Measured at repeat orders of customers with a
    cycle of their own (two orders or more before, so both predictors have a date) who
    allow analytics and personalization (without it no score is shown), and only for an
    order after the newest known one (a late order is not the one that came next)."""
    last = profile.last_order_at
    if profile.orders < 2 or last is None or t <= last:
        return
    if profile.consent and not (
        allows(profile, "analytics") and allows(profile, "personalization")
    ):
        return
    model, own = cycle(profile, params), cycle(profile, None)
    assert model is not None and own is not None  # two orders: both have a cycle
    counts[MEASURED] += 1
    counts[ERROR + "model"] += abs(last + round(model * DAY) - t) // 1000
    counts[ERROR + "own_gap"] += abs(last + round(own * DAY) - t) // 1000


def next_purchase_view(
    profile: Profile, params: BGNBDParams | None, as_of: int
) -> dict[str, Any] | None:
    """The ``next_purchase`` section of a profile document: None when unknown."""
    found = next_purchase(profile, params, as_of)
    if found is None:
        return None
    return {
        "cycle_days": found.cycle_days,
        "expected_at": iso(found.expected_at),
        "next_order_in_days": found.in_days,
        "p_alive": None if found.p_alive is None else round(found.p_alive, 4),
        "reasons": found.reasons,
    }
