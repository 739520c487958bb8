"""One daily series' demand model: River's Holt-Winters, learned a closed day at a time.

River's ``time_series.HoltWinters`` (additive, weekly season of 7 days) learns
``log1p`` of the day's value: on the log scale a weekday's season is a factor of the
level ("Saturdays 1.8x the average day") and a busy day does not drag the level as far.
Its forecast is read out with the trend damped (``PHI``): River's own forecast carries
the newest trend undamped over all 28 days, which on CDNOW's early decline overshoots
(MASE at 28 days 1.10 undamped, 0.97 damped; README: Demand forecasts). The parameters
were chosen on a grid over CDNOW's daily purchase counts (README says so); the
season starts additively here (``_learn``), not as River starts it.

Quality is measured test-then-train, like churn's: each day's value scores the forecasts
made 1 to 28 days before it, beside the seasonal-naive forecast made then (the value of
the same weekday in the last week observed), so ``mase`` < 1 beats seasonal-naive. The
squared log errors per horizon give the prediction intervals.

>>> model = DemandModel()
>>> for day in range(56):
...     model.learn(20.0 if day % 7 == 5 else 10.0)
>>> [round(p) for p in model.points(7)]  # the 57th day is day 56: 56 % 7 == 0
[10, 10, 10, 10, 10, 20, 10]
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from river import time_series
from river.time_series.holt_winters import AdditiveSeason, Trend

ALPHA, BETA, GAMMA, PHI = 0.3, 0.05, 0.1, 0.8
SEASON = 7
HORIZON = 28  # days a forecast reaches
WARM_DAYS = 28  # days learned before its forecasts are scored
DECAY = 0.05  # weight of a new squared error in a horizon's running mean
Z80, Z95 = 1.2816, 1.96


class Errors:
    """Absolute errors of the model and of seasonal-naive at one horizon, summed."""

    __slots__ = ("model", "n", "naive")

    def __init__(self) -> None:
        self.model = 0.0
        self.naive = 0.0
        self.n = 0

    def add(self, model: float, naive: float) -> None:
        self.model += model
        self.naive += naive
        self.n += 1


class DemandModel:
    """A daily series' Holt-Winters model, its recent values and its measured errors."""

    def __init__(self) -> None:
        self.hw = time_series.HoltWinters(alpha=ALPHA, beta=BETA, gamma=GAMMA, seasonality=SEASON)
        self.days = 0  # days learned
        self.recent: deque[float] = deque(maxlen=HORIZON + SEASON)  # values, oldest first
        # The log forecasts made after each of the last HORIZON days (None: not scored).
        self.made: deque[list[float] | None] = deque(maxlen=HORIZON)
        self.squared = [-1.0] * HORIZON  # running mean squared log error (-1: none yet)
        self.errors = [Errors() for _ in range(HORIZON)]  # by horizon - 1
        self.predicted: float | None = None  # the day before's forecast of the newest day

    def learn(self, value: float) -> None:
        """Learn the next day's ``value`` (>= 0), after scoring the forecasts made for it."""
        value = max(0.0, value)
        x = math.log1p(value)
        newest = self.made[-1] if self.made else None
        self.predicted = None if newest is None else _units(newest[0])
        for h in range(1, len(self.made) + 1):
            made = self.made[-h]
            naive = self._naive(h)
            if made is None or naive is None:
                continue
            e = x - made[h - 1]
            s = self.squared[h - 1]
            self.squared[h - 1] = e * e if s < 0 else s + DECAY * (e * e - s)
            self.errors[h - 1].add(abs(_units(made[h - 1]) - value), abs(naive - value))
        self._learn(x)
        self.recent.append(value)
        self.days += 1
        ready = self.days >= WARM_DAYS and self.hw._initialized
        self.made.append(self._log_points(HORIZON) if ready else None)

    def _learn(self, x: float) -> None:
        hw = self.hw
        if hw._initialized:
            hw.learn_one(x)
            return
        # River starts an additive season as value / level, which fails on a first week
        # of zeros and offsets every weekday by about one on the log scale: it is started
        # here as value - level, the level and trend as River starts them.
        first = hw._first_values
        first.append(x)
        if len(first) < SEASON:
            return
        level = sum(first) / SEASON
        hw.level.append(level)
        self._trend().append(sum(b - a for a, b in itertools.pairwise(first)) / (SEASON - 1))
        self._season().extend(v - level for v in first)
        hw._initialized = True

    def _trend(self) -> Trend:
        assert self.hw.trend is not None  # BETA is set
        return self.hw.trend

    def _season(self) -> AdditiveSeason:
        assert isinstance(self.hw.season, AdditiveSeason)  # additive, SEASON days
        return self.hw.season

    def _naive(self, h: int) -> float | None:
        """Seasonal-naive's forecast, made ``h`` days ago, of the day being learned: the
        value of the same weekday in the last week seen then."""
        back = SEASON * math.ceil(h / SEASON)  # days before the day being learned
        return self.recent[-back] if back <= len(self.recent) else None

    def _log_points(self, horizon: int) -> list[float]:
        hw = self.hw
        if not hw._initialized:  # fewer than a week: the mean so far
            seen = list(self.recent)
            mean = math.log1p(sum(seen) / len(seen)) if seen else 0.0
            return [mean] * horizon
        level, trend, season = hw.level[-1], self._trend()[-1], self._season()
        out, damped = [], 0.0
        for h in range(horizon):
            damped += PHI ** (h + 1)
            out.append(level + damped * trend + season[-SEASON + h % SEASON])
        return out

    def points(self, horizon: int) -> list[float]:
        """The forecast of the next ``horizon`` days, in the series' unit."""
        return [_units(x) for x in self._log_points(horizon)]

    def intervals(self, horizon: int, z: float) -> list[tuple[float, float] | None]:
        """Each day's prediction interval (``z`` standard errors of the log forecast at
        that horizon), None while no forecast at that horizon was scored."""
        out: list[tuple[float, float] | None] = []
        for h, x in enumerate(self._log_points(horizon)):
            s = self.squared[h]
            out.append(None if s < 0 else (_units(x - z * s**0.5), _units(x + z * s**0.5)))
        return out

    def weekday_factors(self) -> list[float] | None:
        """Each of the next 7 days' season as a factor of the average day (None before
        the season is known)."""
        if not self.hw._initialized:
            return None
        season = [self._season()[-SEASON + h] for h in range(SEASON)]
        mean = sum(season) / SEASON
        return [math.exp(s - mean) for s in season]

    def weekly_change(self) -> float | None:
        """The trend as a change per week (0.03: 3% more each week), None before known."""
        if not self.hw._initialized:
            return None
        return math.exp(SEASON * self._trend()[-1]) - 1.0

    def level(self) -> float | None:
        """The average day lately, in the series' unit."""
        if not self.hw._initialized:
            return None
        season = [self._season()[-SEASON + h] for h in range(SEASON)]
        return _units(self.hw.level[-1] + sum(season) / SEASON)


def _units(x: float) -> float:
    """A log1p forecast back in the series' unit (never below zero)."""
    return max(0.0, math.expm1(x))
