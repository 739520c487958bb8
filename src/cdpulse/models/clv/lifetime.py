"""Lifetime value in the stream: refit from every customer's summary, score each profile.

The worker keeps one compact order summary per customer (orders, first and last order
time, net revenue); the learner's periodic refit turns all of them into new BG/NBD and
Gamma-Gamma parameters (``refit``), published as a versioned ``ClvSnapshot``. Profiles are
scored with the newest parameters whenever they are read (``clv_view``): P(alive) falls
as event time passes without orders, so a read shows it at ``as_of``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdpulse.models.clv.fit import ClvFitError
from cdpulse.models.clv.model import LifetimeValue, summary_from_profile
from cdpulse.profile.model import Profile

MIN_CUSTOMERS = 20  # fewer order histories than this say nothing about a population


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """What the refit needs of one customer, as stored beside the profiles."""

    orders: int
    first_order_at: int
    last_order_at: int
    net_revenue: float

    def to_json(self) -> bytes:
        return json.dumps(
            [self.orders, self.first_order_at, self.last_order_at, self.net_revenue]
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> OrderSummary:
        orders, first, last, revenue = json.loads(raw)
        return cls(int(orders), int(first), int(last), float(revenue))

    @classmethod
    def of(cls, profile: Profile) -> OrderSummary | None:
        if profile.orders == 0 or profile.first_order_at is None or profile.last_order_at is None:
            return None
        return cls(
            profile.orders,
            profile.first_order_at,
            profile.last_order_at,
            profile.revenue - profile.refunded,
        )


@dataclass(frozen=True, slots=True)
class ClvSnapshot:
    """Published lifetime-value parameters."""

    version: int
    model: LifetimeValue
    customers: int  # how many order histories the fit saw
    # The event time the summaries were read at (epoch ms); a snapshot pickled before
    # this field has none (``getattr(snapshot, "as_of", None)``).
    as_of: int | None = None


INPUTS = ("x", "t_x", "T", "m")  # the models' inputs per customer, as drift names them


def _inputs(summaries: Iterable[OrderSummary], as_of: int) -> list[Any]:
    rows = []
    for s in summaries:
        summary = summary_from_profile(
            s.orders, s.first_order_at, s.last_order_at, max(0.0, s.net_revenue), as_of
        )
        if summary is not None:
            rows.append(summary)
    return rows


def refit(
    summaries: Iterable[OrderSummary], as_of: int, previous: ClvSnapshot | None
) -> ClvSnapshot | None:
    """New parameters from every summary; None when they cannot (yet) be fitted."""
    rows = _inputs(summaries, as_of)
    if len(rows) < MIN_CUSTOMERS:
        return None
    x, t_x, T, m = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    try:
        model = LifetimeValue.fit(x, t_x, T, m, start=previous.model if previous else None)
    except ClvFitError:
        return None  # keep serving the previous parameters
    return ClvSnapshot((previous.version if previous else 0) + 1, model, len(rows), as_of)


def scored_inputs(
    summaries: Iterable[OrderSummary], as_of: int, snapshot: ClvSnapshot, horizon_days: float
) -> list[list[float]]:
    """Every customer's inputs (``INPUTS``) at ``as_of`` and the value ``snapshot``
    expects of them over the horizon: what the drift monitor of lifetime value reads."""
    rows = _inputs(summaries, as_of)
    if not rows:
        return []
    x, t_x, T, m = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    value = snapshot.model.predict(x, t_x, T, m, horizon=horizon_days).expected_value
    table: list[list[float]] = np.column_stack([x, t_x, T, m, value]).tolist()
    return table


def clv_view(
    profile: Profile, snapshot: ClvSnapshot | None, as_of: int, horizon_days: float
) -> dict[str, Any]:
    """The ``clv`` section of a profile at ``as_of``: P(alive), purchases, value."""
    days = int(horizon_days)
    view: dict[str, Any] = {
        "p_alive": None,
        f"expected_purchases_{days}d": None,
        f"expected_value_{days}d": None,
        "reasons": [],
        "model_version": None,
    }
    summary = OrderSummary.of(profile)
    if snapshot is None or summary is None:
        return view
    inputs = summary_from_profile(
        summary.orders,
        summary.first_order_at,
        summary.last_order_at,
        max(0.0, summary.net_revenue),
        max(as_of, summary.last_order_at),
    )
    if inputs is None:
        return view
    prediction = snapshot.model.predict(*inputs, horizon=horizon_days)
    view["p_alive"] = round(float(prediction.p_alive), 4)
    view[f"expected_purchases_{days}d"] = round(float(prediction.expected_purchases), 4)
    view[f"expected_value_{days}d"] = round(float(prediction.expected_value), 2)
    view["reasons"] = reasons(inputs.x, inputs.t_x, inputs.T, inputs.m)
    view["model_version"] = snapshot.version
    return view


def reasons(x: int, t_x: float, T: float, m: float) -> list[str]:
    """What the lifetime value rests on, in words: BG/NBD reads frequency and recency,
    Gamma-Gamma the average order.

    >>> for reason in reasons(2, 200.0, 270.0, 30.0):
    ...     print(reason)
    3 orders in 200 days (100 days apart on average)
    no order for 70 days
    average order 30.00
    """
    if x == 0:
        frequency = f"one order so far, {T:.0f} days ago"
    else:
        frequency = f"{x + 1} orders in {t_x:.0f} days ({t_x / x:.0f} days apart on average)"
    quiet = T - t_x
    recency = f"no order for {quiet:.0f} days" if quiet >= 1 else "ordered today"
    return [frequency, recency, f"average order {m:.2f}"]
