"""A series' forecast as served: the next days with prediction intervals, and why, in words.

>>> from cdpulse.models.forecast.book import ForecastBook
>>> book = ForecastBook()
>>> for day in range(20454, 20454 + 56):  # 2026-01-01 (a Thursday) on
...     book.learn_day(day, {"units|g:shoes": 18 if day % 7 == 2 else 10})
>>> served = forecast(book, ("category", "shoes"), 7)
>>> served["days"][0]["date"], round(served["days"][0]["units"]["forecast"])
('2026-02-26', 10)
>>> served["reasons"][0]
'weekly pattern: Saturdays 1.6x the average day, Mondays 0.9x'
"""

from __future__ import annotations

from typing import Any

from cdpulse.kpis.fields import day_name
from cdpulse.models.forecast.book import TARGETS, ForecastBook, Key, Series
from cdpulse.models.forecast.model import HORIZON, Z80, Z95, DemandModel

WEEKDAYS = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")
CLEAR = 0.1  # a weekday this far from the average day (10%) is a weekly pattern


def forecast(book: ForecastBook, key: Key, horizon: int) -> dict[str, Any]:
    """The forecast of series ``key`` for the ``horizon`` days after the last learned."""
    if not 1 <= horizon <= HORIZON:
        raise ValueError(f"horizon must be 1 to {HORIZON} days, got {horizon}")
    series = book.series[key]
    assert book.last_day is not None  # a series exists only once a day was learned
    first = book.last_day + 1
    per_target = {t: _target(series.model(t), horizon) for t in TARGETS}
    days = [
        {"date": day_name(first + h), **{t: per_target[t][h] for t in TARGETS}}
        for h in range(horizon)
    ]
    return {
        "level": key[0],
        "name": key[1],
        "model_version": book.version,
        "learned_through": day_name(book.last_day),
        "since": day_name(series.first_day),
        "days_learned": series.units.days,
        "horizon_days": horizon,
        "days": days,
        "reasons": reasons(series, first),
        "quality": _quality(series),
    }


def _target(model: DemandModel, horizon: int) -> list[dict[str, Any]]:
    out = []
    bands = zip(model.intervals(horizon, Z80), model.intervals(horizon, Z95), strict=True)
    for point, (i80, i95) in zip(model.points(horizon), bands, strict=True):
        out.append(
            {
                "forecast": round(point, 4),
                "low_80": None if i80 is None else round(i80[0], 4),
                "high_80": None if i80 is None else round(i80[1], 4),
                "low_95": None if i95 is None else round(i95[0], 4),
                "high_95": None if i95 is None else round(i95[1], 4),
            }
        )
    return out


def reasons(series: Series, first: int) -> list[str]:
    """The units forecast in words: its weekly pattern, its trend, its level, its record
    against seasonal-naive. ``first``: the epoch day the forecast starts on."""
    model = series.units
    factors = model.weekday_factors()
    if factors is None:
        return [f"fewer than 7 days learned ({model.days}): the forecast is their average"]
    by_weekday = {(first + 3 + h) % 7: f for h, f in enumerate(factors)}  # day 0: Thursday
    high = max(by_weekday, key=lambda d: (by_weekday[d], -d))
    low = min(by_weekday, key=lambda d: (by_weekday[d], d))
    if by_weekday[high] - 1 < CLEAR and 1 - by_weekday[low] < CLEAR:
        out = ["no clear weekly pattern: every weekday within 10% of the average day"]
    else:
        out = [
            f"weekly pattern: {WEEKDAYS[high]} {by_weekday[high]:.1f}x the average day, "
            f"{WEEKDAYS[low]} {by_weekday[low]:.1f}x"
        ]
    change = model.weekly_change()
    assert change is not None
    if abs(change) < 0.02:
        out.append("trend: flat (within 2% a week)")
    else:
        out.append(f"trend: {'rising' if change > 0 else 'falling'} {abs(change):.0%} a week")
    level = model.level()
    assert level is not None
    out.append(f"about {level:.1f} units on an average day lately")
    week = model.errors[6]
    if week.n and week.naive:
        mase = week.model / week.naive
        verdict = "beats" if mase < 1 else "does not beat"
        out.append(
            f"a week ahead it {verdict} repeating last week (MASE {mase:.2f} over "
            f"{week.n} forecasts)"
        )
    return out


def _quality(series: Series) -> dict[str, Any]:
    """MAE and MASE a day, a week and four weeks ahead, per target (None: not scored)."""
    out: dict[str, Any] = {}
    for target in TARGETS:
        model = series.model(target)
        for h in (1, 7, 28):
            e = model.errors[h - 1]
            out[f"{target}_mae_{h}d"] = round(e.model / e.n, 4) if e.n else None
            out[f"{target}_mase_{h}d"] = round(e.model / e.naive, 4) if e.naive else None
    return out
