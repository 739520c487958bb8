"""HTTP views of the demand forecasts (scope ``read``): ``/v1/forecasts`` (the shop's,
and which categories and products have one), ``/v1/forecasts/{category}`` and
``/v1/forecasts/products/{product_id}``; ``?horizon=`` 1 to 28 days (default 14).

They serve the newest book the learner published (``app/forecast_learner.py``), which the
api reloads with the other snapshots every ``CDPULSE_MODEL_REFRESH_SECONDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

from cdpulse.models.forecast import ForecastBook, forecast
from cdpulse.models.forecast.book import CATEGORIES, PRODUCTS, SHOP, Key
from cdpulse.models.forecast.model import HORIZON

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.store.models import SnapshotStore

DEFAULT_HORIZON = 14
NOT_YET = (
    "no demand forecast yet: the learner publishes one once a day is closed (every input "
    "partition a day past its end plus CDPULSE_FORECAST_LATENESS_SECONDS)"
)


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status


def register_forecast_views(
    app: faust.App, store: SnapshotStore[ForecastBook], guarded: Guard
) -> None:
    """Add the forecast routes to the app."""

    def book() -> ForecastBook:
        found = store.get()
        if found is None or found.last_day is None:
            raise _Refused(404, NOT_YET)
        return found

    def horizon_of(request: Request) -> int:
        text = request.query.get("horizon", str(DEFAULT_HORIZON))
        try:
            horizon = int(text)
        except ValueError:
            horizon = 0
        if not 1 <= horizon <= HORIZON:
            raise _Refused(
                400, f"horizon must be a whole number of days, 1 to {HORIZON}, got {text!r}"
            )
        return horizon

    async def answer(view: View, request: Request, key: Key | None) -> Response:
        try:
            horizon = horizon_of(request)
            found = book()
            if key is None:
                shop = (SHOP, "")
                return view.json(
                    {
                        "shop": forecast(found, shop, horizon) if shop in found.series else None,
                        "categories": _names(found, CATEGORIES),
                        "products": _names(found, PRODUCTS),
                    }
                )
            if key not in found.series:
                level = "category" if key[0] == CATEGORIES else "product"
                raise _Refused(
                    404,
                    f"no demand forecast for {level} {key[1]!r}; those with one are "
                    f"{_names(found, key[0])[:50]} (GET /v1/forecasts)",
                )
            return view.json(forecast(found, key, horizon))
        except _Refused as refused:
            return view.json({"error": str(refused)}, status=refused.status)

    @app.page("/v1/forecasts")
    class ForecastsView(View):
        """The shop's forecast and the series that have one."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            return await answer(self, request, None)

    @app.page("/v1/forecasts/{category}")
    class CategoryForecastView(View):
        """A category's daily units and revenue ahead."""

        @guarded("read")
        async def get(self, request: Request, category: str) -> Response:
            return await answer(self, request, (CATEGORIES, category))

    @app.page("/v1/forecasts/products/{product_id}")
    class ProductForecastView(View):
        """A top product's daily units and revenue ahead."""

        @guarded("read")
        async def get(self, request: Request, product_id: str) -> Response:
            return await answer(self, request, (PRODUCTS, product_id))


def _names(book: ForecastBook, level: str) -> list[str]:
    return sorted(name for lvl, name in book.series if lvl == level)
