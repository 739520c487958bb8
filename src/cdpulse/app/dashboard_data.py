"""The dashboard's own routes: score distributions and the inputs' health (scope ``read``).

``GET /v1/dashboard/distributions``: churn risk and lifetime value as quantiles and
binned counts, from the histograms the learners' drift monitors keep in Redis
(``app/drift.py``), never recomputed or guessed: churn, the scores the model gave the
examples it learned in the drift window (``CDPULSE_DRIFT_WINDOW_DAYS`` of decision
time, up to the newest day learned); lifetime value, every customer's expected value at
the newest refit. A model whose learner has observed nothing yet answers ``n: 0``.

``GET /v1/dashboard/quality``: per input topic the messages received, the workers' lag,
the rejections and how long ago the newest message arrived, and the rejections by
reason (``app/input_health.py``, read from Kafka at most every ``FRESH_SECONDS``).

``GET /v1/dashboard/segments?from=&to=``: each segment's size at the end of each day of
the range (default: the 30 days up to the newest transition), counted from the segments
topic (``app/segment_history.py``), with ``complete`` false when the topic no longer holds
the whole history or has more to read.

``GET /v1/dashboard/trust``: every tracked model's newest drift report and the newest
fairness report, the very documents the model cards and ``/v1/fairness`` serve, in one
answer that says "none yet" with a 200 (a page's 404 is an error on its console).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from faust.web import Request, Response, View

from cdpulse.app.drift import TRACKED
from cdpulse.app.fairness import NO_REPORT
from cdpulse.app.input_health import InputHealth
from cdpulse.app.segment_history import SegmentHistory
from cdpulse.contract.topics import Topics
from cdpulse.kpis.fields import day_name
from cdpulse.kpis.report import QueryError, Range
from cdpulse.models.drift import DAY, DriftMonitor
from cdpulse.models.histogram import Histogram
from cdpulse.models.score_distribution import distribution
from cdpulse.ops import metrics
from cdpulse.settings import Settings
from cdpulse.store.drift import RedisDriftStore
from cdpulse.store.fairness import RedisFairnessStore

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.connections import AsyncRedis

log = logging.getLogger(__name__)

FRESH_SECONDS = 5.0  # Kafka is read at most this often: once per page refresh
DEFAULT_DAYS = 30


def score_histogram(monitors: list[DriftMonitor], days: int | None) -> tuple[Histogram, Any]:
    """The score histogram of every unit's monitor over the newest ``days`` days (only
    the newest day when None), and that span as [from, to) epoch ms (None: nothing)."""
    held = [day for m in monitors for day in m.days]
    merged = Histogram()
    if not held:
        return merged, None
    newest = max(held)
    first = newest - (days - 1 if days is not None else 0)
    for monitor in monitors:
        for day, histograms in monitor.days.items():
            if first <= day <= newest:
                merged.merge(histograms[-1])  # the score is each day's last histogram
    return merged, [first * DAY, (newest + 1) * DAY]


def register_dashboard_data(
    app: faust.App,
    settings: Settings,
    client: AsyncRedis,
    topics: Topics,
    segments: list[str],
    guarded: Guard,
) -> None:
    """Add ``/v1/dashboard/distributions``, ``/quality``, ``/segments`` and ``/trust``
    (scope ``read``); ``segments``: the names the segments file declares."""
    drift = RedisDriftStore(client, settings.redis_prefix)
    fairness = RedisFairnessStore(client, settings.redis_prefix)
    health = InputHealth(settings, topics)
    asked = asyncio.Lock()
    answered: list[Any] = [0.0, None]  # monotonic time, the answer
    history = SegmentHistory(topics.segments, health.options)
    counted = asyncio.Lock()
    history_read = [0.0]  # monotonic time of the last read

    async def model(name: str, days: int | None, span: Any, what: str) -> dict[str, Any]:
        histogram, window = score_histogram(await drift.monitors(name), days)
        return {"model": name, "what": what, "window": window, **distribution(histogram, span)}

    @app.page("/v1/dashboard/distributions")
    class DistributionsView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            window = settings.drift_window_days
            horizon = settings.clv_horizon_days
            return self.json(
                {
                    "distributions": [
                        await model(
                            "churn",
                            window,
                            (0.0, 1.0),
                            f"churn risk the model gave the customers it learned from, "
                            f"over the last {window} days of decision time",
                        ),
                        await model(
                            "clv",
                            None,
                            None,
                            f"expected value over the next {horizon:g} days of every "
                            "customer at the newest refit",
                        ),
                    ]
                }
            )

    @app.page("/v1/dashboard/quality")
    class QualityView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            async with asked:
                if answered[1] is None or time.monotonic() - answered[0] >= FRESH_SECONDS:
                    try:
                        answered[1] = await asyncio.to_thread(health.read)
                    except Exception as exc:
                        metrics.KAFKA_ERRORS.inc()
                        log.warning("the inputs' health was not read from Kafka: %s", exc)
                        return self.json(
                            {"error": f"Kafka did not answer ({exc}); the next refresh retries"},
                            status=503,
                        )
                    answered[0] = time.monotonic()
            return self.json(answered[1])

    @app.page("/v1/dashboard/trust")
    class TrustView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            reports = await drift.reports(list(TRACKED))
            report = await fairness.load()
            return self.json(
                {
                    "drift": {
                        name: msgspec.to_builtins(reports[name]) if name in reports else None
                        for name in TRACKED
                    },
                    "fairness": None if report is None else msgspec.to_builtins(report),
                    "fairness_missing": NO_REPORT if report is None else "",
                }
            )

    @app.page("/v1/dashboard/segments")
    class SegmentSizesView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            # One read at a time, and no answer while a read moves the counts.
            async with counted:
                if not history_read[0] or time.monotonic() - history_read[0] >= FRESH_SECONDS:
                    try:
                        await asyncio.to_thread(history.read)
                    except Exception as exc:
                        metrics.KAFKA_ERRORS.inc()
                        log.warning("the segments topic was not read: %s", exc)
                        return self.json(
                            {"error": f"Kafka did not answer ({exc}); the next refresh retries"},
                            status=503,
                        )
                    history_read[0] = time.monotonic()
                try:
                    span = _span(request.query, history)
                except QueryError as exc:
                    return self.json({"error": str(exc)}, status=400)
                return self.json(
                    {
                        "from": span.first,
                        "to": span.last,
                        "days": [day_name(d) for d in span.days],
                        "sizes": history.sizes(segments, span.days),
                        "complete": await asyncio.to_thread(history.complete),
                        "pending": history.pending,
                        "unreadable": history.unreadable,
                    }
                )


def _span(query: Any, history: SegmentHistory) -> Range:
    """The days asked for; by default the 30 up to the newest transition's day."""
    last = query.get("to")
    if not last:
        held = [day for days in history.deltas.values() for day in days]
        last = day_name(max(held, default=int(time.time() // 86_400)))
    first = query.get("from")
    if not first:
        first = day_name(Range.parse(last, last).end - DEFAULT_DAYS + 1)
    return Range.parse(first, last)
