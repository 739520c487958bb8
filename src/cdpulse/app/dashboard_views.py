"""``/dashboard``: the live KPIs and what the engine knows beyond them, as a page.

KPI tiles, trend, funnel and cohort heatmap; segments over time; churn-risk and
lifetime-value distributions; experiments; trigger uplift; data quality; drift alarms;
the fairness report. The page and its scripts are files of this package (``app/static``:
the page, its script and Chart.js 4.4.7 with its MIT licence), so it works without
reaching any other site. It holds no data: every 15 seconds its script reads, of its own
origin, ``/v1/kpis``, ``/v1/funnels``, ``/v1/cohorts``, ``/v1/segments``,
``/v1/experiments``, ``/v1/rules`` with each rule's uplift, and the routes of
``app/dashboard_data.py``. Scoped ``read`` like every route: with tokens
configured, open it through a proxy that adds ``Authorization: Bearer <read token>``
(README: Live KPIs); ``make demo`` runs without tokens.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard

# name -> content type: what /dashboard/{name} serves, and nothing else
ASSETS = {
    "dashboard.js": "application/javascript",
    "chart.umd.js": "application/javascript",
}
# The page's own scripts only: no inline script, no other origin.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)


def _static(name: str) -> str:
    return resources.files("cdpulse.app").joinpath("static", name).read_text(encoding="utf-8")


def register_dashboard_views(app: faust.App, guarded: Guard) -> None:
    """Add ``/dashboard`` and its scripts to the app (scope ``read``)."""
    page = _static("dashboard.html")
    assets = {name: _static(name) for name in ASSETS}
    headers = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"}

    @app.page("/dashboard")
    class DashboardView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            return self.html(page, headers=dict(headers))

    @app.page("/dashboard/{name}")
    class DashboardAssetView(View):
        @guarded("read")
        async def get(self, request: Request, name: str) -> Response:
            if name not in assets:
                known = ", ".join(sorted(assets))
                return self.json(
                    {"error": f"no asset {name!r}; the dashboard serves {known}"}, status=404
                )
            return self.text(assets[name], content_type=ASSETS[name], headers=dict(headers))
