"""``/dashboard`` in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by selenium), against real Kafka, Redis, worker and api processes.

Tokens are on, as in a deployment: the browser reaches the api through a proxy that adds
a ``read`` token to every request (README: Live KPIs), and the api itself refuses the
page without one. The page must load with nothing on its console, draw its charts, and
show the numbers its routes give for the same range: ``/v1/kpis``, ``/v1/funnels``,
``/v1/cohorts``, the segments, the experiments (exposed over HTTP by the test), the
trigger rules' uplift, ``/v1/dashboard/quality`` (the test sends some broken messages),
``/v1/dashboard/distributions`` and ``/v1/dashboard/trust``; each route is checked in
turn against what the test sent or wrote. The test saves a screenshot
(``.run/test/dashboard.png``).

The learner's outputs (drift monitors and reports, the fairness report) are written
through the learner's own stores and report functions from examples made here, as a
learner publishes them: a learner has nothing to report on a 16-day shop (no churn label
is decided before the 30-day horizon), and its refits would make the test minutes long.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from selenium import webdriver

from cdpulse.app.drift import TRACKED, windows_of
from cdpulse.connections import async_redis
from cdpulse.contract.topics import Topics
from cdpulse.kpis.fields import epoch_day
from cdpulse.models.drift import DAY, DriftMonitor
from cdpulse.models.fairness import Outcome, fairness_report, subject_report
from cdpulse.models.personas_labels import PersonaExample
from cdpulse.models.personas_learner import PersonaLearner
from cdpulse.privacy.seal import Seal
from cdpulse.producer import Producer
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop
from cdpulse.store.drift import RedisDriftStore
from cdpulse.store.fairness import RedisFairnessStore
from cdpulse.store.models import persona_store
from tests.integration import test_tracking_browser as browser
from tests.integration.conftest import RUN_DIR, Env, drained, free_port, wait_until
from tests.unit.test_kpis import with_attribution

READ = "dashboard-read-secret"
ASSIGN = "dashboard-assign-secret"
TOKENS = {
    "dashboard": {"secret": READ, "scopes": ["read"]},
    "storefront": {"secret": ASSIGN, "scopes": ["assign"]},
}
SEGMENTS = """\
rfm: false
segments:
  - name: repeat_buyer
    when: orders >= 2
  - name: big_cart
    when: cart_value > 100.0
experiments:
  - name: checkout_button
    variants: {control: 1, green: 1}
    window_days: 365
"""
TRIGGERS = Path(__file__).parents[2] / "deploy" / "triggers.yaml"
BROKEN = {b"{not json": 3, b"[1, 2]": 2}  # raw message -> how many are sent
REASONS = {"invalid_json": 3, "not_an_object": 2}
CHURN_DAYS = 10  # days of churn examples written, 200 a day


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


def scores(rng: random.Random, n: int, raised: bool = False) -> list[float]:
    """Scores in (0, 1), most low; 0.3 higher when ``raised``."""
    return [
        min(0.999, max(0.001, rng.betavariate(2, 5) + (0.3 if raised else 0.0))) for _ in range(n)
    ]


def learner_outputs(settings: Settings, newest_day: int) -> dict[str, Any]:
    """Drift monitors and reports of churn and lifetime value, and a fairness report in
    which the country ``FR`` is selected far less often, written as a learner writes them;
    returns the raw values written, for the oracle."""
    rng = random.Random(7)
    width = len(TRACKED["churn"])
    churn = DriftMonitor(TRACKED["churn"])
    churn_scores: dict[int, list[float]] = {}
    for day in range(newest_day - CHURN_DAYS + 1, newest_day + 1):
        churn_scores[day] = scores(rng, 200)
        churn.observe(
            (day * DAY + i, [rng.gauss(0, 1) for _ in range(width)] + [s])
            for i, s in enumerate(churn_scores[day])
        )
    clv = DriftMonitor(TRACKED["clv"])
    values = [rng.lognormvariate(4, 0.8) for _ in range(300)]
    rows = [[rng.gauss(0, 1) for _ in TRACKED["clv"]] + [v] for v in values]
    earlier = [[*r[:-1], v / 2] for r, v in zip(rows, values, strict=True)]
    clv.replace((newest_day - 3) * DAY, earlier)  # an older refit: not shown
    clv.replace(newest_day * DAY, rows)  # the newest refit: the one the page shows
    outcomes = [
        Outcome({"country": country}, selected=score >= 0.5, score=score, label=int(score > 0.6))
        for country, raised in (("DE", True), ("FR", False), ("US", True))
        for score in scores(rng, 150, raised)
    ]
    report = fairness_report(
        "the test's customers",
        (newest_day + 1) * DAY,
        [subject_report("model", "churn", "churn score >= 0.5 (at risk)", outcomes)],
    )
    windows = windows_of(settings)
    # Personas: three kinds of buyer, learned by the learner's own class from examples
    # (the features, log1p'd: orders, net revenue, average order, active days, events per active
    # day, days between orders; a 16-day shop decides too few order days of its own).
    learner = PersonaLearner.fresh(k=3, warmup=30, every=50)
    kinds = ((1, 40, 40, 2, 5, 0), (4, 400, 100, 10, 12, 7), (2, 60, 30, 20, 30, 15))
    examples = [
        PersonaExample(f"p-{n}", newest_day, n, [math.log1p(rng.uniform(v, 1.1 * v)) for v in kind])
        for n, kind in enumerate(kinds * 50)
    ]
    learner.learn(list(enumerate(examples)))
    personas = learner.snapshot()

    async def write() -> None:
        client = async_redis(settings.redis_url)
        try:
            drift = RedisDriftStore(client, settings.redis_prefix)
            for name, monitor in (("churn", churn), ("clv", clv)):
                await drift.save(name, 0, monitor)
                await drift.publish(name, monitor.report(windows, settings.drift_psi_threshold))
            await RedisFairnessStore(client, settings.redis_prefix).publish(report)
            store = persona_store(client, settings.redis_prefix, Seal.from_settings(settings))
            assert await store.publish(personas)
        finally:
            await client.aclose()

    asyncio.run(write())
    window = range(newest_day - settings.drift_window_days + 1, newest_day + 1)
    return {
        "churn": [s for day in window for s in churn_scores.get(day, [])],
        "clv": values,
        "flagged": report.flagged,
    }


def repeat_buyers(events: list[Any], days: list[str]) -> tuple[list[int], list[int]]:
    """Bounds of ``repeat_buyer``'s size at the end of each day. A change is dated by the
    profile's newest event time once its batch is applied (``last_seen``), so a customer
    enters on the day of their second order at the earliest and on the day of their last
    event (theirs or their visitor's) at the latest: (at least, at most) per day."""
    second: dict[str, str] = {}  # customer -> the day of their second order
    last: dict[str, str] = {}  # customer -> the day of their newest event
    visitor: dict[str, str] = {}  # anonymous id -> customer
    orders: Counter[str] = Counter()
    ordered = sorted(events, key=lambda e: e["timestamp"])
    for event in ordered:
        if event.get("customer_id") and event.get("anonymous_id"):
            visitor[event["anonymous_id"]] = event["customer_id"]
    for event in ordered:
        customer = event.get("customer_id") or visitor.get(event.get("anonymous_id") or "")
        if customer is None:
            continue
        last[customer] = event["timestamp"][:10]
        if event["type"] == "order_completed":
            orders[customer] += 1
            if orders[customer] == 2:
                second[customer] = event["timestamp"][:10]
    least = [sum(max(day, last[c]) <= d for c, day in second.items()) for d in days]
    most = [sum(day <= d for day in second.values()) for d in days]
    return least, most


def steady(topic: dict[str, Any]) -> dict[str, Any]:
    """A topic's quality row without its age, which grows between two reads."""
    return {k: v for k, v in topic.items() if k != "seconds_since_newest"}


def broken_messages(env: Env) -> None:
    """Messages no event can be read from, on the clickstream: the dead-letter topic's."""
    with Producer.from_settings(env.settings) as producer:
        for raw, n in BROKEN.items():
            for _ in range(n):
                producer.send_raw(env.settings.topic_clickstream, raw, b"broken")


# Debian's chromium, headless, its console recorded: the tracking test's fixture.
chromium = browser.chromium


SHOWN = """return {
  tiles: Object.fromEntries([...document.querySelectorAll('[data-kpi]')]
    .map(t => [t.dataset.kpi,
               [JSON.parse(t.dataset.value), t.querySelector('.value').textContent]])),
  steps: Object.fromEntries([...document.querySelectorAll('[data-step]')]
    .map(s => [s.dataset.step, Number(s.dataset.value)])),
  cells: [...document.querySelectorAll('[data-cohort]')]
    .map(c => [c.dataset.cohort, Number(c.dataset.week), Number(c.dataset.value)]),
  latest: document.getElementById('latest').dataset.period,
  trend: Chart.getChart('trend').data.datasets.map(d => d.data),
  funnel: Chart.getChart('funnel-chart').data.datasets[0].data,
  status: document.getElementById('status').className,
  segments: Object.fromEntries([...document.querySelectorAll('[data-segment]')]
    .map(e => [e.dataset.segment, JSON.parse(e.dataset.value)])),
  segment_days: Chart.getChart('segments-chart').data.labels,
  segment_lines: Object.fromEntries(Chart.getChart('segments-chart').data.datasets
    .map(d => [d.label, d.data])),
  quantiles: Object.fromEntries([...document.querySelectorAll('[data-quantile]')]
    .map(e => [e.dataset.quantile, JSON.parse(e.dataset.value)])),
  bins: Object.fromEntries(['churn', 'clv']
    .map(m => [m, Chart.getChart(m + '-chart').data.datasets[0].data])),
  variants: Object.fromEntries([...document.querySelectorAll('[data-experiment]')]
    .map(e => [e.dataset.experiment, JSON.parse(e.dataset.value)])),
  rules: Object.fromEntries([...document.querySelectorAll('[data-rule]')]
    .map(e => [e.dataset.rule, JSON.parse(e.dataset.value)])),
  topics: Object.fromEntries([...document.querySelectorAll('[data-topic]')]
    .map(e => [e.dataset.topic, JSON.parse(e.dataset.value)])),
  reasons: Object.fromEntries([...document.querySelectorAll('[data-reason]')]
    .map(e => [e.dataset.reason, JSON.parse(e.dataset.value)])),
  drift: Object.fromEntries([...document.querySelectorAll('[data-drift]')]
    .map(e => [e.dataset.drift, JSON.parse(e.dataset.value)])),
  fairness: Object.fromEntries([...document.querySelectorAll('[data-fairness]')]
    .map(e => [e.dataset.fairness, JSON.parse(e.dataset.value)])),
  flagged: JSON.parse(document.getElementById('fairness-flagged').dataset.value),
  personas: Object.fromEntries([...document.querySelectorAll('[data-persona]')]
    .map(e => [e.dataset.persona, JSON.parse(e.dataset.value)])),
  empty: [...document.querySelectorAll('.empty')].map(e => e.textContent),
}"""


def test_the_dashboard_shows_what_its_routes_serve(
    env: Env, chromium: webdriver.Chrome, tmp_path: Path
) -> None:
    segments = tmp_path / "segments.yaml"
    segments.write_text(SEGMENTS, encoding="utf-8")
    roles = env.roles(
        CDPULSE_AUTH_DISABLED="false",
        CDPULSE_API_TOKENS=json.dumps(TOKENS),
        CDPULSE_SEGMENTS_FILE=str(segments),
        CDPULSE_TRIGGER_RULES=str(TRIGGERS),
    )
    api = roles.api.url
    auth = {"Authorization": f"Bearer {READ}"}
    events = with_attribution(list(Shop(customers=80, days=16, seed=41).events()))
    half = len(events) // 2
    sent: Counter[str] = Counter()
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            sent[producer.send(event)] += 1
    wait_until(lambda: drained(env.settings), 300, "the worker to drain the first half")
    # Exposed now, so the orders of the second half convert (an assignment is a POST).
    customers = sorted({e["customer_id"] for e in events[:half] if e.get("customer_id")})
    assigned: dict[str, str] = {}
    with httpx.Client(base_url=api, timeout=30) as http:
        for customer in customers:
            answer = http.post(
                f"/v1/experiments/checkout_button/assignment/{customer}",
                headers={"Authorization": f"Bearer {ASSIGN}"},
            )
            assigned[customer] = answer.json()["variant"]
    with Producer.from_settings(env.settings) as producer:
        for event in events[half:]:
            sent[producer.send(event)] += 1
    broken_messages(env)
    sent[env.settings.topic_clickstream] += sum(BROKEN.values())
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")
    assert httpx.get(f"{api}/dashboard", timeout=10).status_code == 401  # scoped like all
    newest = httpx.get(f"{api}/v1/kpis", headers=auth, timeout=30).json()["to"]
    written = learner_outputs(env.settings, epoch_day(newest))
    wait_until(
        lambda: httpx.get(f"{api}/v1/personas", headers=auth, timeout=10).status_code == 200,
        60,
        "the api to load the persona snapshot",
    )

    proxy = _proxy(api, free_port())
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        chromium.set_window_size(1400, 3600)
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
        shown = chromium.execute_script(SHOWN)
        chromium.save_screenshot(str(RUN_DIR / "dashboard.png"))
        console = chromium.get_log("browser")
    finally:
        proxy.shutdown()

    assert console == [], f"the page logged: {console}"
    status = shown["status"]
    assert status == "meta", f"the page shows an error: {shown}"
    params = {"from": first, "to": last, "granularity": "day"}
    with httpx.Client(base_url=api, headers=auth, timeout=30) as http:
        kpis = http.get("/v1/kpis", params={**params, "by": "channel"}).json()
        funnel = http.get("/v1/funnels", params=params).json()
        cohorts = http.get("/v1/cohorts", params={"from": first, "to": last}).json()
        history = http.get("/v1/dashboard/segments", params={"from": first, "to": last}).json()
        sizes = http.get("/v1/segments").json()
        members = {
            s["name"]: http.get(f"/v1/segments/{s['name']}/members", params={"limit": 1000})
            for s in sizes["segments"]
        }
        experiment = http.get("/v1/experiments/checkout_button").json()
        rules = [r["name"] for r in http.get("/v1/rules").json()["rules"]]
        uplift = {name: http.get(f"/v1/rules/{name}/uplift").json() for name in rules}
        quality = http.get("/v1/dashboard/quality").json()
        distributions = http.get("/v1/dashboard/distributions").json()["distributions"]
        cards = {name: http.get(f"/v1/models/{name}") for name in ("churn", "clv")}
        fairness = http.get("/v1/fairness").json()
        personas = http.get("/v1/personas").json()
        panel = http.get("/v1/dashboard/personas").json()

    # The KPI tiles, trend, funnel and cohorts.
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

    # Segments: sizes now (each the length of its member list), and at the end of each
    # day, which ends on the sizes now; repeat buyers' within what the orders sent allow.
    listed = {name: len(answer.json()["members"]) for name, answer in members.items()}
    assert shown["segments"] == {s["name"]: s["size"] for s in sizes["segments"]} == listed
    assert listed["repeat_buyer"] > 0
    assert history["complete"] and history["days"][-1] == last == newest
    assert shown["segment_days"] == history["days"]
    assert shown["segment_lines"] == history["sizes"]
    assert {name: line[-1] for name, line in history["sizes"].items()} == listed
    least, most = repeat_buyers(events, history["days"])
    sized = history["sizes"]["repeat_buyer"]
    assert all(a <= n <= b for a, n, b in zip(least, sized, most, strict=True)), (
        sized,
        least,
        most,
    )
    assert sized[-1] == most[-1]

    # Experiments: what the page shows is the route's, whose exposures are the test's.
    arms = {v["name"]: v for v in experiment["variants"]}
    assert shown["variants"] == {f"checkout_button:{n}": v for n, v in arms.items()}
    assert {n: v["exposures"] for n, v in arms.items()} == dict(Counter(assigned.values()))
    assert sum(v["conversions"] for v in arms.values()) > 0
    # Trigger uplift: every configured rule, as its route answers.
    assert rules and shown["rules"] == uplift

    # Data quality: every message sent counted on its topic, nothing left to process,
    # the broken ones rejected with their reasons.
    topics = {t["topic"]: t for t in quality["topics"]}
    assert {name: steady(t) for name, t in shown["topics"].items()} == {
        name: steady(t) for name, t in topics.items()
    }
    assert {name: t["messages"] for name, t in topics.items()} == {
        name: sent[name] for name in Topics.from_settings(env.settings).inputs
    }
    assert all(t["lag"] == 0 for t in topics.values()), topics
    assert shown["reasons"] == quality["rejections"] == REASONS
    assert topics[env.settings.topic_clickstream]["rejected"] == sum(REASONS.values())
    assert all(t["newest_received"] is not None for t in topics.values() if t["messages"])

    # Distributions: the route's, whose figures are those of the values written (each
    # bucket within ~2 % of its values).
    by_model = {d["model"]: d for d in distributions}
    for model, values in (("churn", written["churn"]), ("clv", written["clv"])):
        d = by_model[model]
        assert d["n"] == len(values), model
        assert shown["bins"][model] == [b["count"] for b in d["bins"]]
        assert sum(shown["bins"][model]) == len(values)
        for q in d["quantiles"]:
            assert shown["quantiles"][f"{model}:{q['rank']}"] == q["value"]
            exact = float(np.quantile(values, q["rank"], method="inverted_cdf"))
            assert abs(q["value"] - exact) <= 0.025 * exact, (model, q, exact)

    # Personas: each one's share of the customers, as /v1/personas serves them.
    assert len(personas["personas"]) == 3
    assert panel == {**personas, "pending": None}
    assert shown["personas"] == {str(p["id"]): p["customer_share"] for p in personas["personas"]}
    assert sum(shown["personas"].values()) == pytest.approx(1.0, abs=1e-3)

    # Drift and fairness: the model cards' and /v1/fairness's own figures.
    for name in ("churn", "clv"):
        if cards[name].status_code == 200:
            assert shown["drift"][name] == cards[name].json()["drift_status"]
    assert shown["drift"]["churn"] in {"stable", "moderate", "drifted"}
    assert shown["flagged"] == fairness["flagged"] == written["flagged"]
    assert any("country=FR" in f for f in fairness["flagged"])
    assert shown["fairness"] == {
        f"{s['name']}:{a['attribute']}:{g['group']}": {
            "selection_rate": g["selection_rate"],
            "ratio": g["ratio"],
            "flagged": g["flagged"],
        }
        for s in fairness["subjects"]
        for a in s["attributes"]
        for g in a["groups"]
    }
    assert (RUN_DIR / "dashboard.png").stat().st_size > 20_000
