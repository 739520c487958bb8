"""Demand forecasts learned live from a simulated shop, and the same from ``cdpulse evaluate``."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx

from cdpulse.cli.evaluate_forecast import replay_forecast
from cdpulse.contract.partitions import partition_of
from cdpulse.kpis.fields import day_name
from cdpulse.models.forecast import forecast
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, drained, wait_until


def test_forecasts_are_learned_live_and_evaluate_agrees(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=120, days=45, seed=11).events())
    # No RFM sweep: a second writer of profiles could make a save of an early day land
    # after a later watermark (README: Demand forecasts, what closes a day).
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    roles = env.roles(
        learner=True, CDPULSE_SEGMENTS_FILE=str(segments), CDPULSE_FORECAST_LEARN_SECONDS="1"
    )
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")

    # The replay: the same pipeline, KPI fold, closed days and book, in-process.
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_forecast(lines, env.settings, partition_of)).book
    assert replay.last_day is not None
    learner = roles.learning
    wait_until(
        lambda: learner.metric("cdpulse_forecast_learned_day") == replay.last_day,
        120,
        f"the learner to learn every closed day (through {day_name(replay.last_day)})",
    )
    # Forecast-vs-actual on /metrics: the replay's figures, by level, target and horizon.
    for q in replay.quality():
        labels = {"level": q.level, "target": q.target, "horizon": str(q.horizon or "all")}
        assert math.isclose(learner.metric("cdpulse_forecast_mae", labels), q.mae, rel_tol=1e-9)
        assert q.mase is not None
        assert math.isclose(learner.metric("cdpulse_forecast_mase", labels), q.mase, rel_tol=1e-9)
    categories = sorted(name for level, name in replay.series if level == "category")
    products = sorted(name for level, name in replay.series if level == "product")
    assert categories and products

    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        wait_until(
            lambda: (
                (http.get("/v1/forecasts").json().get("shop", {}) or {}).get("learned_through")
                == day_name(replay.last_day)
            ),
            60,
            "the api to serve the newest forecasts",
        )
        listing = http.get("/v1/forecasts?horizon=28").json()
        assert listing["categories"] == categories and listing["products"] == products
        wanted = forecast(replay, ("shop", ""), 28)
        assert _same(listing["shop"], wanted)
        for category in categories:
            served = http.get(f"/v1/forecasts/{category}", params={"horizon": 28}).json()
            assert _same(served, forecast(replay, ("category", category), 28)), category
            assert served["reasons"] and all(served["reasons"])
            assert len(served["days"]) == 28
        for product in products:
            served = http.get(f"/v1/forecasts/products/{product}").json()
            assert _same(served, forecast(replay, ("product", product), 14)), product
        missing = http.get("/v1/forecasts/no-such-category")
        assert missing.status_code == 404 and categories[0] in missing.json()["error"]
        bad = http.get(f"/v1/forecasts/{categories[0]}", params={"horizon": 29})
        assert bad.status_code == 400 and "1 to 28" in bad.json()["error"]


def _same(served: dict[str, object], wanted: dict[str, object]) -> bool:
    """The same forecast, whatever the versions the learner and the replay count."""
    return {k: v for k, v in served.items() if k != "model_version"} == {
        k: v for k, v in wanted.items() if k != "model_version"
    }
