"""The documents ``GET /v1/kpis``, ``/v1/funnels`` and ``/v1/cohorts`` serve, from counters.

Pure: the api reads the hashes (``store.kpis``) and hands them here. A query names a
range of days (``Range``); a weekly one is widened to whole ISO weeks, because the
distinct counts of a week (visitors, buyers, ...) are kept per week and do not add up
from its days. Additive counts (events, money, newsletter openers, which count a
customer once per newsletter) add up over any range, so a range has a total of those;
a distinct count has one per period only.

>>> r = Range.parse("2026-01-01", "2026-01-07", "week")
>>> r.first, r.last, [day_name(d) for d in r.periods]
('2025-12-29', '2026-01-11', ['2025-12-29', '2026-01-05'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cdpulse.kpis.fields import (
    ACTIVE,
    CART_ADDS,
    CHECKOUTS,
    COHORT_SIZE,
    DIMENSIONS,
    DISTINCT,
    NEW_VISITORS,
    ORDERING,
    ORDERS,
    PRODUCT_VIEWS,
    REFUSED,
    day_name,
    epoch_day,
    split,
    week_of,
)

MAX_DAYS = 400  # a query's range at most: a year and a bit, one hash per day
GRANULARITIES = ("day", "week")
Counters = Mapping[str, int]

__all__ = ["MAX_DAYS", "QueryError", "Range", "cohorts", "funnels", "kpis"]


class QueryError(ValueError):
    """A query parameter that cannot be answered; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class Range:
    """Days ``start``..``end`` (epoch days, both included) in periods of a granularity."""

    start: int
    end: int
    granularity: str

    @classmethod
    def parse(cls, first: str, last: str, granularity: str = "day") -> Range:
        if granularity not in GRANULARITIES:
            raise QueryError(f"granularity must be day or week, got {granularity!r}")
        try:
            start, end = epoch_day(first), epoch_day(last)
        except ValueError as exc:
            raise QueryError(f"from/to: {exc}") from None
        if end < start:
            raise QueryError(f"'to' ({last}) is before 'from' ({first}); swap them")
        if granularity == "week":
            start, end = week_of(start), week_of(end) + 6
        if end - start + 1 > MAX_DAYS:
            raise QueryError(
                f"the range holds {end - start + 1} days, at most {MAX_DAYS} are served; "
                "ask for a shorter one"
            )
        return cls(start, end, granularity)

    @property
    def first(self) -> str:
        return day_name(self.start)

    @property
    def last(self) -> str:
        return day_name(self.end)

    @property
    def days(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    @property
    def periods(self) -> list[int]:
        """The first day of each period."""
        step = 7 if self.granularity == "week" else 1
        return list(range(self.start, self.end + 1, step))


def dimension_of(by: str | None) -> str | None:
    """The field code of a ``by`` parameter (None: totals only)."""
    if by is None or by == "":
        return None
    if by not in DIMENSIONS:
        raise QueryError(f"by must be one of {', '.join(DIMENSIONS)}, got {by!r}")
    return DIMENSIONS[by]


# --- reading counters -------------------------------------------------------------------------


def _grouped(counters: Counters, dimension: str | None) -> dict[str, dict[str, int]]:
    """Counters by group: "" the totals, else each value of ``dimension``."""
    out: dict[str, dict[str, int]] = {}
    for name, amount in counters.items():
        metric, code, value = split(name)
        if code == "" and not name.startswith("_"):
            out.setdefault("", {})[metric] = amount
        elif dimension is not None and code == dimension:
            out.setdefault(value, {})[metric] = amount
    return out


def _add(into: dict[str, int], counters: Mapping[str, int], only: frozenset[str] | None) -> None:
    for name, amount in counters.items():
        if only is None or split(name)[0] in only:
            into[name] = into.get(name, 0) + amount


_DISTINCT = frozenset(DISTINCT)


def period_counters(
    span: Range, days: Mapping[int, Counters], weeks: Mapping[int, Counters]
) -> dict[int, dict[str, int]]:
    """Each period's counters: a day's hash; a week's distinct counts from its own hash
    and everything else summed over its days."""
    if span.granularity == "day":
        return {day: dict(days.get(day, {})) for day in span.periods}
    out: dict[int, dict[str, int]] = {}
    for week in span.periods:
        into: dict[str, int] = {}
        for day in range(week, week + 7):
            _add(into, days.get(day, {}), None)
        into = {k: v for k, v in into.items() if split(k)[0] not in _DISTINCT}
        _add(into, weeks.get(week, {}), _DISTINCT)
        out[week] = into
    return out


# --- the documents --------------------------------------------------------------------------


def _ratio(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def metrics(c: Mapping[str, int], distinct: bool = True) -> dict[str, Any]:
    """The KPIs of one period (or group) from its counters; ``distinct``: with the
    distinct counts (a range total has none)."""
    g = c.get
    revenue, refunded, orders = g("revenue_cents", 0), g("refunded_cents", 0), g(ORDERS, 0)
    out: dict[str, Any] = {}
    if distinct:
        visitors, new = g("visitors", 0), g(NEW_VISITORS, 0)
        buyers = g("buyers", 0)
        out.update(
            visitors=visitors,
            customers=g("customers", 0),
            new_visitors=new,
            returning_visitors=visitors - new,
            viewers=g("viewers", 0),
            cart_adders=g("cart_adders", 0),
            checkout_starters=g("checkout_starters", 0),
            buyers=buyers,
            repeat_buyers=g("repeat_buyers", 0),
            repeat_purchase_rate=_ratio(g("repeat_buyers", 0), buyers),
            visitor_conversion_rate=_ratio(buyers, visitors),
        )
    gaps = g("order_gaps", 0)
    openers, views, shown = g("email_openers", 0), g(PRODUCT_VIEWS, 0), g("offers_shown", 0)
    out.update(
        sessions=g("sessions", 0),
        product_views=views,
        cart_adds=g(CART_ADDS, 0),
        checkouts=g(CHECKOUTS, 0),
        orders=orders,
        revenue=_money(revenue),
        refunds=g("refunds", 0),
        refunded=_money(refunded),
        net_revenue=_money(revenue - refunded),
        average_order_value=_money(round(revenue / orders)) if orders else None,
        repeat_orders=gaps,
        mean_days_between_orders=_ratio(g("order_gap_ms", 0), gaps * 86_400_000, 2),
        email_opens=g("email_opens", 0),
        email_clicks=g("email_clicks", 0),
        email_openers=openers,
        email_clickers=g("email_clickers", 0),
        click_to_open_rate=_ratio(g("email_clickers", 0), openers),
        recommendation_views=g("reco_views", 0),
        recommendation_orders=g("reco_orders", 0),
        recommendation_revenue=_money(g("reco_revenue_cents", 0)),
        recommendation_view_share=_ratio(g("reco_views", 0), views),
        recommendation_conversion_rate=_ratio(g("reco_orders", 0), g("reco_views", 0)),
        offers_shown=shown,
        offer_views=g("offer_views", 0),
        offer_orders=g("offer_orders", 0),
        offer_revenue=_money(g("offer_revenue_cents", 0)),
        offers_redeemed=g("offers_redeemed", 0),
        offer_click_through_rate=_ratio(g("offer_views", 0), shown),
        offer_redemption_rate=_ratio(g("offers_redeemed", 0), shown),
    )
    return out


def _document(
    span: Range,
    by: str | None,
    days: Mapping[int, Counters],
    weeks: Mapping[int, Counters],
    key: str,
    each: Callable[[Mapping[str, int]], Any],
    total: Callable[[Mapping[str, int]], Any],
) -> dict[str, Any]:
    """A range's document: per period ``each`` of its counters (under ``key``, and per
    value of ``by``), and ``total`` of the periods' counters added up."""
    dimension = dimension_of(by)
    rows = []
    summed: dict[str, int] = {}
    for start, counters in period_counters(span, days, weeks).items():
        groups = _grouped(counters, dimension)
        row: dict[str, Any] = {"period": day_name(start), key: each(groups.pop("", {}))}
        if dimension is not None:
            row["by"] = {value: each(c) for value, c in sorted(groups.items())}
        rows.append(row)
        _add(summed, counters, None)
    grouped = _grouped(summed, dimension)
    document: dict[str, Any] = {
        "from": span.first,
        "to": span.last,
        "granularity": span.granularity,
        "by": by or None,
        "periods": rows,
        "total": total(grouped.pop("", {})),
    }
    if dimension is not None:
        document["total_by"] = {value: total(c) for value, c in sorted(grouped.items())}
    if summed.get(REFUSED):
        document["refused_fields"] = summed[REFUSED]
    return document


def kpis(
    span: Range,
    by: str | None,
    days: Mapping[int, Counters],
    weeks: Mapping[int, Counters],
) -> dict[str, Any]:
    """``GET /v1/kpis``: every period's KPIs (and per value of ``by``), and the range's
    total of the additive ones."""
    return _document(span, by, days, weeks, "kpis", metrics, lambda c: metrics(c, distinct=False))


STEPS = (
    ("product_view", "viewers", PRODUCT_VIEWS),
    ("cart_add", "cart_adders", CART_ADDS),
    ("checkout", "checkout_starters", CHECKOUTS),
    ("order", "buyers", ORDERS),
)


def _funnel(c: Mapping[str, int]) -> list[dict[str, Any]]:
    steps = []
    previous: tuple[int, int] | None = None
    for name, distinct, events in STEPS:
        customers, n = c.get(distinct, 0), c.get(events, 0)
        step: dict[str, Any] = {"step": name, "customers": customers, "events": n}
        if previous is not None:
            step["conversion"] = _ratio(customers, previous[0])
            step["event_conversion"] = _ratio(n, previous[1])
        steps.append(step)
        previous = (customers, n)
    return steps


def funnels(
    span: Range,
    by: str | None,
    days: Mapping[int, Counters],
    weeks: Mapping[int, Counters],
) -> dict[str, Any]:
    """``GET /v1/funnels``: per period, product view -> cart add -> checkout -> order:
    customers reaching each step in the period and the step's events, with the
    conversion from the step before; the range's total adds the periods up (a
    customer reaching a step in two periods counts twice there)."""
    return _document(span, by, days, weeks, "steps", _funnel, _funnel)


def cohorts(span: Range, found: Mapping[int, Counters], through: int) -> dict[str, Any]:
    """``GET /v1/cohorts``: the customers whose first order fell in each week of
    ``span``, and per week since (up to the week of epoch day ``through``) how many
    came back (a visit or an order) and how many ordered."""
    rows = []
    last = week_of(through)
    for start in range(week_of(span.start), span.end + 1, 7):
        c = found.get(start, {})
        size = c.get(COHORT_SIZE, 0)
        cells = []
        for k in range(0, (last - start) // 7 + 1):
            active, ordering = c.get(f"{ACTIVE}:{k}", 0), c.get(f"{ORDERING}:{k}", 0)
            cells.append(
                {
                    "week": k,
                    "active": active,
                    "ordering": ordering,
                    "active_share": _ratio(active, size),
                    "ordering_share": _ratio(ordering, size),
                }
            )
        rows.append({"cohort": day_name(start), "customers": size, "weeks": cells})
    return {"from": day_name(week_of(span.start)), "to": span.last, "cohorts": rows}
