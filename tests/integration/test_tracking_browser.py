"""analytics.js (the browser bundle of @segment/analytics-next, from tests/js) on a shop's
page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium), against real Kafka, Redis, worker and api processes.

The page is served here from one origin and posts to the api at another, so the browser
asks and the api answers CORS for real. The page loads analytics.js as its README says,
with only the host and the write key set (in the settings Segment's CDN would serve: no
CDN is reached), and sends what a shop sends: two page views, a product view, a custom
event of its own and an order. Between the browser and the api sits the network, which
here loses the answer to the order's first request after the api took it: analytics.js
sends it again (same messageId) and the order must count once. The profile must equal
the oracle's; the page's console must show nothing but the lost answer. A page of an
origin no token names gets nothing taken: neither a request that needs a preflight nor a
``text/plain`` one with the key in its body, which the browser sends without asking.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.integration.conftest import Env, drained, free_port, wait_until
from tests.integration.js import installed
from tests.integration.test_tracking_api import (
    CUSTOM,
    TOKENS,
    TYPES,
    order,
    product,
    profile_fields,
)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WEB_KEY = "web-write-key"
BUNDLE = "node_modules/@segment/analytics-next/dist/umd/index.js"

P1 = product("P-1", "games", 19.5)
# What the shop's page tells analytics.js, in order: each call and its arguments.
CALLS: list[tuple[str, list[Any]]] = [
    ("page", []),
    ("page", ["Shop", "Product", {"title": "P-1"}]),
    ("track", ["Product Viewed", P1]),
    ("track", ["Video Played", {"seconds": 31}]),  # the shop's own: a custom event
    (
        "track",
        ["Order Completed", order("O-1", {**P1, "quantity": 2}, product("P-2", "books", 4.0))],
    ),
]

# The shop's page: analytics.js loaded with only the host and the write key set, in the
# settings Segment's CDN would serve; its telemetry to <host>/m is off (README).
PAGE = """<!doctype html>
<html><head><title>Shop</title><link rel="icon" href="data:,">
<script src="/analytics-next.js"></script></head>
<body><script>
const KEY = %(key)s, HOST = %(host)s;
const analytics = AnalyticsNext.AnalyticsBrowser.load({
  writeKey: KEY,
  cdnSettings: {
    integrations: {"Segment.io": {apiKey: KEY, apiHost: HOST, protocol: "http"}},
    metrics: {sampleRate: 0},
  },
});
(async () => {
  for (const [call, args] of %(calls)s) await analytics[call](...args);
  window.anonymousId = (await analytics.user()).anonymousId();
})().catch((error) => { window.failed = String(error); });
</script></body></html>
"""

# A page of an origin no token names: the two ways analytics.js posts, by hand.
ELSEWHERE = """<!doctype html>
<html><head><title>Elsewhere</title><link rel="icon" href="data:,"></head><body><script>
const url = %(url)s, KEY = %(key)s;
const body = JSON.stringify({type: "page", anonymousId: "A-elsewhere", messageId: "m-x",
                             writeKey: KEY, properties: {url: location.href}});
const send = (headers) => fetch(url, {method: "POST", headers, body})
  .then((r) => "answered " + r.status, (e) => "blocked: " + e.name);
Promise.all([
  send({"Content-Type": "text/plain"}),
  send({"Content-Type": "text/plain", "Authorization": "Basic " + btoa(KEY + ":")}),
]).then((outcomes) => { window.outcomes = outcomes; });
</script></body></html>
"""


@dataclass
class Network:
    """What the network between the browser and the api saw: each request's method,
    path, Origin, the event it carried and the status the browser got."""

    api: str
    log: list[dict[str, Any]] = field(default_factory=list)
    lost_one: bool = False  # the answer to the order's first request

    def passed(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.log if r["event"] == event and r["method"] == "POST"]


def _serve(handler: type[BaseHTTPRequestHandler], port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _network(network: Network) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        def do_OPTIONS(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hop = {"host", "content-length", "connection"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
            answer = httpx.request(
                self.command, network.api + self.path, content=body, headers=headers, timeout=30
            )
            event = json.loads(body).get("event") if body else None
            status, content = answer.status_code, answer.content
            if self.command == "POST" and event == "Order Completed" and not network.lost_one:
                network.lost_one = True  # the api took it; its answer is lost on the way
                status, content = 503, b""
            network.log.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "origin": self.headers.get("Origin"),
                    "event": event,
                    "status": status,
                }
            )
            self.send_response(status)
            for name, value in answer.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_: Any) -> None:
            pass

    return Forward


def _pages(pages: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.partition("?")[0])
            kind = "text/javascript" if self.path.endswith(".js") else "text/html"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: Any) -> None:
            pass

    return Pages


@pytest.fixture
def chromium() -> Iterator[webdriver.Chrome]:
    if shutil.which(CHROMIUM) is None or shutil.which(CHROMEDRIVER) is None:
        pytest.fail("install Debian's chromium and chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_analytics_js_in_chromium_makes_the_oracles_profile_and_a_retry_counts_once(
    env: Env, chromium: webdriver.Chrome
) -> None:
    page_port = free_port()
    shop = f"http://127.0.0.1:{page_port}"
    tokens = {
        "shop-web": {"secret": WEB_KEY, "scopes": ["ingest"], "origins": [shop]},
        "crm": TOKENS["crm"],  # profile_fields reads with it
    }
    roles = env.roles(CDPULSE_AUTH_DISABLED="false", CDPULSE_API_TOKENS=json.dumps(tokens))
    network, net_port = Network(roles.api.url), free_port()
    net_server = _serve(_network(network), net_port)
    host = f"127.0.0.1:{net_port}"
    values = {"key": json.dumps(WEB_KEY), "host": json.dumps(f"{host}/v1")}
    pages = {
        "/": (PAGE % {**values, "calls": json.dumps(CALLS)}).encode(),
        "/elsewhere": (ELSEWHERE % {**values, "url": json.dumps(f"http://{host}/v1/p")}).encode(),
        "/analytics-next.js": (installed() / BUNDLE).read_bytes(),
    }
    page_server = _serve(_pages(pages), page_port)
    try:
        duplicates = roles.worker.metric("cdpulse_duplicates_total")
        chromium.get(shop + "/")
        wait_until(
            lambda: chromium.execute_script("return window.anonymousId || window.failed"),
            60,
            "the page's calls to analytics.js",
        )
        assert chromium.execute_script("return window.failed") is None
        visitor = chromium.execute_script("return window.anonymousId")
        # analytics.js sends the order again once its answer was lost; the retry is taken
        wait_until(
            lambda: [r["status"] for r in network.passed("Order Completed")] == [503, 200],
            60,
            "analytics.js to send the order again",
        )
        # the retry is a repeat of what the api took: the worker drops it
        wait_until(
            lambda: roles.worker.metric("cdpulse_duplicates_total") >= duplicates + 1,
            120,
            "the worker to drop the order's repeat",
        )
        wait_until(lambda: drained(env.settings), 120, "the worker to drain its topics")
        assert profile_fields(roles.api.url, visitor) == expected(CALLS)
        console = chromium.get_log("browser")
        posts = [r for r in network.log if r["method"] == "POST"]
        assert {r["origin"] for r in network.log} == {shop}
        assert [r["status"] for r in posts].count(200) == len(CALLS), network.log
        # the console shows only the lost answer
        assert [e["level"] for e in console] == ["SEVERE"], console
        assert "the server responded with a status of 503" in console[0]["message"]

        # A page of an origin no token names: nothing it sends is taken.
        elsewhere = f"http://localhost:{page_port}"
        chromium.get(elsewhere + "/elsewhere")
        wait_until(lambda: chromium.execute_script("return window.outcomes"), 30, "the other page")
        assert chromium.execute_script("return window.outcomes") == ["blocked: TypeError"] * 2
        theirs = [(r["method"], r["status"]) for r in network.log if r["origin"] == elsewhere]
        # the text/plain request reached the api, which refused it; the other one never left
        assert sorted(theirs) == [("OPTIONS", 403), ("POST", 403)], network.log
        assert profile_fields(roles.api.url, "A-elsewhere") is None
    finally:
        net_server.shutdown()
        page_server.shutdown()


def expected(calls: list[tuple[str, list[Any]]]) -> dict[str, Any]:
    """The visitor's profile fields, from the page's calls alone (no identify: an
    anonymous profile, which links no other id and has no traits)."""
    kinds = [
        "page_viewed" if call == "page" else "custom" if args[0] in CUSTOM else TYPES[args[0]]
        for call, args in calls
    ]
    orders = [args[1] for call, args in calls if call == "track" and args[0] == "Order Completed"]
    custom = [CUSTOM[args[0]] for call, args in calls if call == "track" and args[0] in CUSTOM]
    return {
        "anonymous_ids": [],
        "events": len(kinds),
        "counts": {kind: kinds.count(kind) for kind in set(kinds)},
        "orders": len(orders),
        "revenue": round(math.fsum(o["revenue"] for o in orders), 2),
        "cart": [],
        "traits": {},
        "custom": {name: custom.count(name) for name in custom},
    }
