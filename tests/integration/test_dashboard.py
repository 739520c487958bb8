"""``/dashboard`` in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by selenium), against real Kafka, Redis, worker and api processes.

Tokens are on, as in a deployment: the browser reaches the api through a proxy that adds
a ``read`` token to every request (README: Live KPIs), and the api itself refuses the
page without one. The page must load with nothing on its console, draw its charts, and
show the numbers ``/v1/kpis``, ``/v1/funnels`` and ``/v1/cohorts`` give for the same
range; the test saves a screenshot (``.run/test/dashboard.png``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from selenium import webdriver

from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration import test_tracking_browser as browser
from tests.integration.conftest import RUN_DIR, Env, drained, free_port, wait_until
from tests.unit.test_kpis import with_attribution

READ = "dashboard-read-secret"
TOKENS = {"dashboard": {"secret": READ, "scopes": ["read"]}}


def _proxy(api: str, port: int) -> ThreadingHTTPServer:
    """Forwards GETs to the api with the read token added, as a deployment's proxy would."""

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = httpx.get(
                api + self.path, headers={"Authorization": f"Bearer {READ}"}, timeout=30
            )
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# Debian's chromium, headless, its console recorded: the tracking test's fixture.
chromium = browser.chromium


def test_the_dashboard_shows_what_the_kpi_routes_serve(
    env: Env, chromium: webdriver.Chrome
) -> None:
    roles = env.roles(CDPULSE_AUTH_DISABLED="false", CDPULSE_API_TOKENS=json.dumps(TOKENS))
    with Producer.from_settings(env.settings) as producer:
        for event in with_attribution(list(Shop(customers=80, days=16, seed=41).events())):
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")
    api = roles.api.url
    assert httpx.get(f"{api}/dashboard", timeout=10).status_code == 401  # scoped like all
    proxy = _proxy(api, free_port())
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        chromium.set_window_size(1400, 2000)
        chromium.get(f"{url}/dashboard")
        try:
            wait_until(
                lambda: chromium.execute_script("return document.body.dataset.loaded") is not None,
                60,
                "the dashboard to load its numbers",
            )
        except AssertionError:
            status = chromium.execute_script("return document.getElementById('status').textContent")
            console = chromium.get_log("browser")
            raise AssertionError(f"the page did not load: {status!r}, console {console}") from None
        body = chromium.find_element("tag name", "body")
        first, last = body.get_attribute("data-from"), body.get_attribute("data-to")
        shown = chromium.execute_script(
            """return {
              tiles: Object.fromEntries([...document.querySelectorAll('[data-kpi]')]
                .map(t => [t.dataset.kpi, [JSON.parse(t.dataset.value),
                                           t.querySelector('.value').textContent]])),
              steps: Object.fromEntries([...document.querySelectorAll('[data-step]')]
                .map(s => [s.dataset.step, Number(s.dataset.value)])),
              cells: [...document.querySelectorAll('[data-cohort]')]
                .map(c => [c.dataset.cohort, Number(c.dataset.week), Number(c.dataset.value)]),
              latest: document.getElementById('latest').dataset.period,
              trend: Chart.getChart('trend').data.datasets.map(d => d.data),
              funnel: Chart.getChart('funnel-chart').data.datasets[0].data,
              status: document.getElementById('status').className,
            }"""
        )
        chromium.save_screenshot(str(RUN_DIR / "dashboard.png"))
        console = chromium.get_log("browser")
    finally:
        proxy.shutdown()

    assert console == [], f"the page logged: {console}"
    assert shown["status"] == "meta", "the page shows an error"
    auth = {"Authorization": f"Bearer {READ}"}
    params = {"from": first, "to": last, "granularity": "day"}
    with httpx.Client(base_url=api, headers=auth, timeout=30) as http:
        kpis = http.get("/v1/kpis", params={**params, "by": "channel"}).json()
        funnel = http.get("/v1/funnels", params=params).json()
        cohorts = http.get("/v1/cohorts", params={"from": first, "to": last}).json()

    assert kpis["total"]["orders"] > 20, "the shop must give the page something to show"
    tiles = shown["tiles"]
    assert {k.split(".", 1)[0] for k in tiles} == {"total", "latest"}
    for name, (value, text) in tiles.items():
        where, kpi = name.split(".", 1)
        wanted = kpis["total"][kpi] if where == "total" else kpis["periods"][-1]["kpis"][kpi]
        assert value == wanted, (name, value, wanted)
        if isinstance(wanted, int):
            assert text == f"{wanted:,}", (name, text)
    assert shown["latest"] == kpis["periods"][-1]["period"]
    periods = kpis["periods"]
    assert shown["trend"] == [
        [p["kpis"]["visitors"] for p in periods],
        [p["kpis"]["new_visitors"] for p in periods],
        [p["kpis"]["orders"] for p in periods],
    ]
    assert shown["steps"] == {s["step"]: s["customers"] for s in funnel["total"]}
    assert shown["funnel"] == [s["customers"] for s in funnel["total"]]
    cells = [
        [c["cohort"], cell["week"], cell["active"]]
        for c in cohorts["cohorts"]
        for cell in c["weeks"]
        if c["customers"]
    ]
    assert shown["cells"] == cells and cells, "the heatmap is the cohorts route's"
    assert (RUN_DIR / "dashboard.png").stat().st_size > 20_000
