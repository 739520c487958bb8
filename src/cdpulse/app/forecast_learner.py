"""The learner's demand forecasts: every closed day learned from the KPI counters in Redis.

Every ``CDPULSE_FORECAST_LEARN_SECONDS`` one learner (a Redis lock) reads the orders'
low watermark, learns the days closed since its book's last, and not past the wall clock
(``learnable_through``), as ``models.forecast.book``'s ``walk`` says, from their KPI
hashes (``store.kpis``: summed over a cluster's shards) and publishes the book as a sealed
snapshot, which the api serves (``app/forecast_views.py``). The book holds the day it
learned last, so a learner that restarts, or takes over from another, goes on from the
newest published book and learns no day twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Protocol

import faust

from cdpulse.connections import AsyncRedis
from cdpulse.contract.topics import Topics
from cdpulse.kpis.fields import DAY, epoch_day
from cdpulse.models.forecast import ForecastBook, closed_through, low_watermark, walk
from cdpulse.models.forecast.book import LEVELS, TARGETS
from cdpulse.ops import metrics
from cdpulse.privacy.seal import Seal
from cdpulse.settings import Settings
from cdpulse.store.keys import keys_for
from cdpulse.store.kpis import RedisKpis
from cdpulse.store.models import forecast_lock, forecast_store

log = logging.getLogger(__name__)

CHUNK = 64  # days read in one round trip


class DayCounters(Protocol):
    """The KPI counters the learner reads (``store.kpis.RedisKpis``)."""

    async def all(self, kind: int) -> dict[str, dict[str, int]]: ...

    async def read(self, kind: int, days: Sequence[int]) -> dict[int, dict[str, int]]: ...


def learnable_through(low: int, lateness_ms: int, now_ms: int, skew_ms: int) -> int:
    """The last day the book may learn: closed at the orders' low watermark ``low``,
    and never past the wall clock (``now_ms``, plus the ``skew_ms`` an event time may be
    ahead). Decoding holds an event time to its Kafka timestamp, which a producer sets:
    one whose clock says 2999, once its orders reached every partition, would otherwise
    close every day to 2999 and make the book learn them, then no real day ever again."""
    return closed_through(min(low, now_ms + skew_ms), lateness_ms)


async def learn_closed_days(
    book: ForecastBook, kpis: DayCounters, through: int, max_gap: int
) -> ForecastBook:
    """``book`` with the days after its last through ``through`` learned (``walk``; a
    new book when the shop was silent for more than ``max_gap`` days before them)."""
    known: dict[int, dict[str, int]] = {}
    if book.last_day is not None and through - book.last_day <= CHUNK:
        known = await kpis.read(DAY, range(book.last_day + 1, through + 1))
        counted = {day for day, counters in known.items() if counters}
    else:
        # A new book, or a learner stopped for long: the days that counted anything, in
        # one SCAN of the KPI keys, not one read per day since the first (one event
        # dated 1970 was 20,000 of them).
        names = await kpis.all(DAY)
        counted = {epoch_day(name.partition(":")[2]) for name in names}
    plan = walk(book, counted, through, max_gap)
    if plan.afresh:
        book = book.afresh()
    for chunk in range(plan.days.start, plan.days.stop, CHUNK):
        days = range(chunk, min(chunk + CHUNK, plan.days.stop))
        unread = [day for day in days if day not in known]
        if unread:
            known |= await kpis.read(DAY, unread)
        book.learn_days((day, known[day]) for day in days)
    return book


def register_forecast_learner(
    app: faust.App, settings: Settings, client: AsyncRedis, seal: Seal
) -> None:
    """Add the timer that learns the closed days to the learner's app."""
    prefix = settings.redis_prefix
    store = forecast_store(client, prefix, seal)
    kpis = RedisKpis(client, prefix)
    keys = keys_for(client, prefix)
    lateness = int(settings.forecast_lateness_seconds * 1000)
    skew = round(settings.max_future_skew_seconds * 1000)
    seconds = max(1, math.ceil(settings.forecast_learn_seconds))
    orders = Topics.from_settings(settings).transactions

    @app.timer(interval=settings.forecast_learn_seconds)  # type: ignore[untyped-decorator]
    async def learn_forecasts() -> None:
        try:
            if not await forecast_lock(client, prefix, seconds):
                return
            # The newest published book, whoever published it: its days are not relearned.
            book = await store.load() or ForecastBook(products=settings.forecast_products)
            marks = await client.hgetall(keys.watermark)
            low = low_watermark(
                {_text(k): int(v) for k, v in marks.items()}, settings.topic_partitions, orders
            )
            last = learnable_through(low, lateness, int(time.time() * 1000), skew)
            learned = book.last_day
            book = await learn_closed_days(book, kpis, last, settings.forecast_max_gap_days)
            if book.last_day == learned:
                return
            book.version += 1
            if await store.publish(book):
                metrics.MODEL_VERSION.labels("forecast").set(book.version)
                export_quality(book)
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("demand forecast learning failed: %s", exc)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def export_quality(book: ForecastBook) -> None:
    """The book's forecast-vs-actual on /metrics: errors by level, target and horizon,
    and the newest day's actual beside what was forecast for it the day before."""
    if book.last_day is not None:
        metrics.FORECAST_LEARNED_DAY.set(book.last_day)
    for q in book.quality():
        horizon = str(q.horizon or "all")
        metrics.FORECAST_MAE.labels(q.level, q.target, horizon).set(q.mae)
        mase = math.nan if q.mase is None else q.mase
        metrics.FORECAST_MASE.labels(q.level, q.target, horizon).set(mase)
    for level in LEVELS:
        series = [s for key, s in book.series.items() if key[0] == level]
        if not series:
            continue
        for target in TARGETS:
            pairs = [
                (m.recent[-1], m.predicted)
                for m in (s.model(target) for s in series)
                if m.predicted is not None and m.recent
            ]
            metrics.FORECAST_ACTUAL.labels(level, target).set(
                sum(a for a, _ in pairs) if pairs else math.nan
            )
            metrics.FORECAST_PREDICTED.labels(level, target).set(
                sum(p for _, p in pairs) if pairs else math.nan
            )
