"""The demand forecasts of a shop: every series' models, learned from closed days' KPI counters.

The daily totals are the KPI fold's (``cdpulse.kpis``), counted once per event whatever
the redeliveries and whatever the customer's consent, so they do not depend on the order
the worker read its topics in: the shop's ``orders|d:shop`` and ``revenue_cents|d:shop``,
and each category's and product's ``units|g:`` / ``units|p:`` and ``revenue_cents|g:`` /
``|p:``. A day is learned once it is *closed*: the low watermark of the orders' topic
(each of its partitions' newest event time, the lowest of them, ``low_watermark``) is
past its end by the lateness (``closed_through``). The learner learns each closed day
from Redis; ``cdpulse evaluate forecast`` from the replay's counters, with this same
code, so both end with the same book. Days without a sale are learned as zeros, but not
a silence longer than ``CDPULSE_FORECAST_MAX_GAP_DAYS``: after one, the book starts
afresh on the next day that counted anything (``walk``), so an order dated 1970 is not
followed by 56 years of zeros.

Series: the shop (its units are orders), every category sold since the first day, and
the ``products`` products with the most units so far (decided at each day's close; one
that enters the top starts a fresh model that day, one that leaves is dropped). A series
starts on its first day with a sale, so a category launched later does not learn a run
of zeros before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cdpulse.kpis.fields import (
    CATEGORY,
    DAY_MS,
    DEMAND_ORDERS,
    DEMAND_REVENUE,
    PRODUCT,
    REVENUE,
    UNITS,
    split,
)
from cdpulse.models.forecast.model import HORIZON, DemandModel

SHOP, CATEGORIES, PRODUCTS = "shop", "category", "product"
LEVELS = (SHOP, CATEGORIES, PRODUCTS)
TARGETS = ("units", "revenue")
Key = tuple[str, str]  # (level, name): ("category", "shoes"), ("shop", "")


def closed_through(low_watermark: int, lateness_ms: int) -> int:
    """The last epoch day closed at ``low_watermark``: every event of it is in, unless
    later than ``lateness_ms`` behind its partition's newest."""
    return (low_watermark - lateness_ms) // DAY_MS - 1


def low_watermark(watermarks: Mapping[str, int], partitions: int, orders: str) -> int:
    """The lowest newest event time of the ``partitions`` partitions of ``orders``, the
    topic orders come on (``topic:partition`` names in ``watermarks``), 0 until every one
    has been heard from. Every order is counted in the demand the day it is applied,
    whatever else the customer did (``kpis.fold``), so only this topic closes a day: a
    worker that reads the clickstream well ahead of the orders, or the orders ahead of
    it, closes the same days. A partition of it that falls silent holds the days after
    its newest order open (README: Demand forecasts)."""
    marks = [watermarks.get(f"{orders}:{p}") for p in range(partitions)]
    return min(m for m in marks if m is not None) if None not in marks else 0


def day_values(counters: Mapping[str, int]) -> dict[Key, tuple[float, float]]:
    """One day's KPI counters as (units, revenue in currency) per series."""
    out: dict[Key, list[float]] = {}
    if counters.get(DEMAND_ORDERS) or counters.get(DEMAND_REVENUE):
        orders, revenue = counters.get(DEMAND_ORDERS, 0), counters.get(DEMAND_REVENUE, 0)
        out[(SHOP, "")] = [float(orders), revenue / 100]
    for name, amount in counters.items():
        metric, code, value = split(name)
        level = CATEGORIES if code == CATEGORY else PRODUCTS if code == PRODUCT else None
        if level is None or metric not in (UNITS, REVENUE):
            continue
        pair = out.setdefault((level, value), [0.0, 0.0])
        if metric == UNITS:
            pair[0] += amount
        else:
            pair[1] += amount / 100
    return {key: (units, revenue) for key, (units, revenue) in out.items()}


@dataclass
class Series:
    """One series' two models, and the day it started."""

    first_day: int
    units: DemandModel = field(default_factory=DemandModel)
    revenue: DemandModel = field(default_factory=DemandModel)

    def model(self, target: str) -> DemandModel:
        return self.units if target == "units" else self.revenue


@dataclass
class ForecastBook:
    """Every series' models; ``last_day`` the newest day learned (None: none yet)."""

    products: int = 20
    version: int = 0
    last_day: int | None = None
    active_day: int | None = None  # the newest day learned that counted anything
    series: dict[Key, Series] = field(default_factory=dict)
    product_units: dict[str, float] = field(default_factory=dict)  # units so far

    def learn_day(self, day: int, counters: Mapping[str, int]) -> None:
        """Learn closed epoch day ``day`` (the one after ``last_day``) from its counters."""
        if self.last_day is not None and day != self.last_day + 1:
            raise ValueError(
                f"forecast book: day {day} learned after day {self.last_day}; days are "
                "learned one after the other (learn the days between first)"
            )
        values = day_values(counters)
        for (level, name), (units, _) in values.items():
            if level == PRODUCTS:
                self.product_units[name] = self.product_units.get(name, 0.0) + units
        top = set(
            sorted(self.product_units, key=lambda p: (-self.product_units[p], p))[: self.products]
        )
        for key in list(self.series):
            if key[0] == PRODUCTS and key[1] not in top:
                del self.series[key]
        # New series join in key order, not in the order the day's counters came in
        # (Redis' hash order live, the events' order in a replay): the sums over the
        # series (``quality``) then add in the same order, to the last bit.
        for key, (units, revenue) in sorted(values.items()):
            started = key in self.series or not (units or revenue)
            if not started and (key[0] != PRODUCTS or key[1] in top):
                self.series[key] = Series(day)
        for key, series in self.series.items():
            units, revenue = values.get(key, (0.0, 0.0))
            series.units.learn(units)
            series.revenue.learn(revenue)
        self.last_day = day
        if counters:
            self.active_day = day

    def afresh(self) -> ForecastBook:
        """A book with none of this one's days, for a shop back after a long silence
        (``walk``); its version goes on from this one's."""
        return ForecastBook(products=self.products, version=self.version)

    def learn_days(self, days: Iterable[tuple[int, Mapping[str, int]]]) -> int:
        """Learn each (day, counters) in order; how many were learned."""
        n = 0
        for day, counters in days:
            self.learn_day(day, counters)
            n += 1
        return n

    def quality(self) -> list[Quality]:
        """MAE and MASE against seasonal-naive per level, target and horizon (1, 7, 28
        days, and all of 1-28 together), summed over the level's series."""
        out = []
        for level in LEVELS:
            models = [s for k, s in self.series.items() if k[0] == level]
            for target in TARGETS:
                for horizon in (1, 7, 28, 0):
                    hs = range(HORIZON) if horizon == 0 else (horizon - 1,)
                    model = naive = 0.0
                    n = 0
                    for s in models:
                        for h in hs:
                            errors = s.model(target).errors[h]
                            model += errors.model
                            naive += errors.naive
                            n += errors.n
                    if n:
                        mase = model / naive if naive else None
                        out.append(Quality(level, target, horizon, n, model / n, mase))
        return out


@dataclass(frozen=True)
class Walk:
    """The days a book learns next (``walk``): ``days``, after starting afresh when
    ``afresh`` (``ForecastBook.afresh``)."""

    afresh: bool
    days: range


def walk(book: ForecastBook, counted: Iterable[int], through: int, max_gap: int) -> Walk:
    """The days ``book`` learns next, through closed day ``through``: from the day after
    its last, days without a sale included, unless more than ``max_gap`` days in a row
    counted nothing, in which case the book starts afresh on the next day that counted
    something; and never more than ``max_gap`` days past the newest such day.
    ``counted``: the days with any KPI counted, at least those after the book's last
    day through ``through`` (others are ignored).

    One event dated 1970 (the contract takes 1970 to 3000) no longer makes a book walk,
    and learn as zeros, the 56 years to the shop's first day: those years are a silence,
    and the book starts on the shop's first day, as if the event had never come.

    >>> book = ForecastBook()
    >>> walk(book, [0, 20454, 20455, 20460], through=20470, max_gap=90)
    Walk(afresh=False, days=range(20454, 20471))
    """
    after = book.last_day
    # The newest learned day that counted anything; a book published before ``active_day``
    # was kept counts its last day as one.
    seen = book.active_day if book.active_day is not None else after
    start = None if after is None else after + 1
    for day in sorted({d for d in counted if (after is None or d > after) and d <= through}):
        if seen is None or day - seen - 1 > max_gap:
            start = day
        seen = day
    if start is None or seen is None:
        return Walk(False, range(0))
    afresh = after is not None and start != after + 1
    return Walk(afresh, range(start, min(through, seen + max_gap) + 1))


@dataclass(frozen=True)
class Quality:
    """Forecast errors of one level and target at one horizon (0: every horizon 1-28)."""

    level: str
    target: str
    horizon: int
    forecasts: int
    mae: float
    mase: float | None  # MAE / seasonal-naive's MAE on the same days (None: naive exact)

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "target": self.target,
            "horizon": self.horizon or "1-28",
            "forecasts": self.forecasts,
            "mae": round(self.mae, 4),
            "mase": None if self.mase is None else round(self.mase, 4),
        }
