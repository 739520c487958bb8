"""HTTP views of the live KPIs: ``/v1/kpis``, ``/v1/funnels``, ``/v1/cohorts`` (scope
``read``) and their OpenAPI description.

Each answer is one round trip to Redis (the period hashes, ``store.kpis``) and the pure
``kpis.report``; a range without ``to`` ends on the day of the newest event time seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from cdpulse.app.kpi_openapi import OPENAPI
from cdpulse.kpis import report
from cdpulse.kpis.fields import COHORT, DAY, DAY_MS, WEEK, day_name, epoch_day, week_of
from cdpulse.kpis.report import QueryError, Range
from cdpulse.store.kpis import RedisKpis

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.store.redis import RedisProfileStore

DEFAULT_DAYS = 30
DEFAULT_WEEKS = 12


def register_kpi_views(
    app: faust.App, kpis: RedisKpis, store: RedisProfileStore, guarded: Guard
) -> None:
    """Add the KPI routes to the app."""

    async def newest_day() -> int:
        """The day of the newest event time seen (today when nothing was)."""
        newest = await store.watermark()
        return (newest or int(datetime.now(UTC).timestamp() * 1000)) // DAY_MS

    async def span_of(request: Request, weeks: bool = False) -> Range:
        query = request.query
        granularity = "week" if weeks else query.get("granularity", "day")
        last = query.get("to") or day_name(await newest_day())
        first = query.get("from")
        if not first:
            try:
                end = epoch_day(last)
            except ValueError as exc:
                raise QueryError(f"to: {exc}") from None
            back = 7 * (DEFAULT_WEEKS - 1) if granularity == "week" else DEFAULT_DAYS - 1
            first = day_name(end - back)
        return Range.parse(first, last, granularity)

    async def answer(view: View, build: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
        try:
            return view.json(await build())
        except QueryError as exc:
            return view.json({"error": str(exc)}, status=400)

    async def periods(span: Range) -> tuple[dict[int, Any], dict[int, Any]]:
        weeks = [week_of(d) for d in span.periods] if span.granularity == "week" else []
        return await kpis.read(DAY, span.days), await kpis.read(WEEK, weeks)

    @app.page("/v1/kpis")
    class KpisView(View):
        """KPIs per day or week, split by a dimension (``by``)."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            async def build() -> dict[str, Any]:
                span = await span_of(request)
                by = request.query.get("by")
                report.dimension_of(by)  # refused before anything is read
                return report.kpis(span, by, *await periods(span))

            return await answer(self, build)

    @app.page("/v1/funnels")
    class FunnelsView(View):
        """Product view -> cart add -> checkout -> order, per day or week."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            async def build() -> dict[str, Any]:
                span = await span_of(request)
                by = request.query.get("by")
                report.dimension_of(by)
                return report.funnels(span, by, *await periods(span))

            return await answer(self, build)

    @app.page("/v1/cohorts")
    class CohortsView(View):
        """Retention by the week of the first order."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            async def build() -> dict[str, Any]:
                span = await span_of(request, weeks=True)
                found = await kpis.read(COHORT, span.periods)
                return report.cohorts(span, found, max(span.end, await newest_day()))

            return await answer(self, build)

    @app.page("/v1/kpis/openapi.json")
    class KpisOpenApiView(View):
        """The OpenAPI description of these routes."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            return self.json(OPENAPI)
