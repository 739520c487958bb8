"""The health of lifetime value and of the recommender, judged from their inputs' drift:
on their model cards, on the profile's ``clv`` section and on the recommendations answer;
unknown, with the reason, without a report (README: Online models, Model health)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cdpulse.app import api
from cdpulse.models.cards import clv_card
from cdpulse.models.churn.scoring import profile_document
from cdpulse.models.clv.lifetime import INPUTS, ClvSnapshot, refit
from cdpulse.models.drift import DAY, DriftMonitor, DriftReport, DriftWindows
from cdpulse.models.health import HealthPolicy, assess_drift
from cdpulse.models.reco import Recommender
from cdpulse.models.reco.ranker import FEATURES as RANKER_FEATURES
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.settings import ApiToken, Settings
from tests.unit.test_model_cards import _summaries

READ = "read-secret"
POLICY = HealthPolicy()  # PSI threshold 0.25
NO_REPORT = {"status": "unknown", "reasons": ["input drift not known yet: no drift report yet"]}


def _report(names: tuple[str, ...], moved: str) -> DriftReport:
    """35 days of inputs, every one as before but ``moved``, three deviations higher in
    the last week."""
    rng = random.Random(7)
    monitor = DriftMonitor(names)
    for day in range(35):
        rows = []
        for _ in range(200):
            values = [rng.gauss(0, 1) for _ in names]
            if day >= 28:
                values[names.index(moved)] += 3.0
            rows.append((day * DAY, [*values, rng.random()]))
        monitor.observe(rows)
    return monitor.report(DriftWindows(7, 28, None), POLICY.psi_threshold)


def _degraded(report: DriftReport) -> dict[str, Any]:
    """The oracle: every input at or over the threshold, in the report's words."""
    reasons = [
        f"input {f.name} drifted (PSI {f.psi:.2f} >= 0.25)"
        for f in report.features
        if f.psi is not None and f.psi >= 0.25
    ]
    return {"status": "degraded", "reasons": reasons}


def _clv() -> ClvSnapshot:
    snapshot = refit(_summaries(), 365 * DAY, None)  # the model cards' customers
    assert snapshot is not None
    return snapshot


def _profile() -> Profile:
    return Profile(
        id="C-1", orders=2, first_order_at=10 * DAY, last_order_at=40 * DAY, revenue=80.0
    )


def test_a_drifted_clv_input_degrades_its_card_and_flags_the_clv_section() -> None:
    report = _report(INPUTS, "m")
    flagged = _degraded(report)
    assert [r.split()[1] for r in flagged["reasons"]] == ["m"]
    clv = _clv()
    assert clv_card(clv, report, POLICY).to_dict()["health"] == flagged
    health = assess_drift(report, POLICY)
    document = profile_document(_profile(), 60 * DAY, Rules(), None, clv, 90.0, health)
    assert document["clv"]["quality"] == flagged
    assert document["clv"]["p_alive"] is not None  # the score is there, flagged
    # an input the operator set aside is reported as drift, not judged
    ignored = HealthPolicy(ignored=frozenset({"m"}))
    assert clv_card(clv, report, ignored).health.to_json() == {"status": "ok", "reasons": []}


def test_without_a_report_or_a_model_the_clv_health_is_unknown_and_says_why() -> None:
    clv = _clv()
    assert clv_card(clv).to_dict()["health"] == NO_REPORT
    document = profile_document(
        _profile(), 60 * DAY, Rules(), None, clv, 90.0, assess_drift(None, POLICY)
    )
    assert document["clv"]["quality"] == NO_REPORT
    none = profile_document(
        _profile(), 60 * DAY, Rules(), None, None, 90.0, assess_drift(None, POLICY)
    )
    assert none["clv"]["quality"] == {"status": "unknown", "reasons": ["no model yet"]}


def test_the_api_serves_the_health_it_loaded_on_cards_profiles_and_recommendations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clv, profile = _clv(), _profile()
    recommender = Recommender()
    made: dict[str, Any] = {}

    def keep(name: str, make: Any) -> Any:
        def build(*args: Any) -> Any:
            made[name] = make(*args)
            return made[name]

        return build

    monkeypatch.setattr(api, "RedisClvStore", keep("clv", api.RedisClvStore))
    monkeypatch.setattr(api, "RecoShards", keep("reco", api.RecoShards))
    monkeypatch.setattr(api, "RedisProfileStore", keep("profiles", api.RedisProfileStore))
    monkeypatch.setattr(api, "ServedDrift", keep("drift", api.ServedDrift))
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens={"crm": ApiToken(secret=SecretStr(READ), scopes=["read"])},
        redis_url="redis://127.0.0.1:1/0",  # nothing listens: every read is put in place
        kafka_bootstrap="127.0.0.1:1",
    )
    app = api.create_api(settings)
    app.web.init_server()
    made["clv"].current = clv
    made["reco"].current = RecoSnapshot(1, recommender, 0)

    async def get_as_of(profile_id: str) -> tuple[Profile | None, int]:
        return (profile if profile_id == profile.id else None), 60 * DAY

    async def get(profile_id: str) -> Profile | None:
        return (await get_as_of(profile_id))[0]

    monkeypatch.setattr(made["profiles"], "get_as_of", get_as_of)
    monkeypatch.setattr(made["profiles"], "get", get)

    clv_report, reco_report = _report(INPUTS, "t_x"), _report(RANKER_FEATURES, RANKER_FEATURES[0])

    async def read() -> list[list[dict[str, Any]]]:
        """What the card, the list, a profile and its recommendations say: before any
        report was loaded, and after the refresh timer would have loaded them."""
        out = []
        headers = {"Authorization": f"Bearer {READ}"}
        paths = [
            "/v1/models",
            "/v1/models/clv",
            "/v1/profiles/C-1",
            "/v1/profiles/C-1/recommendations",
        ]
        async with TestClient(TestServer(app.web.web_app)) as client:
            for loaded in [{}, {"clv": clv_report, "reco": reco_report}]:
                made["drift"].loaded(loaded)
                out.append([await (await client.get(p, headers=headers)).json() for p in paths])
        return out

    before, after = asyncio.run(read())
    listed, card, document, recommended = before
    assert {m["name"]: m["health"] for m in listed["models"]}["clv"] == NO_REPORT
    assert card["health"] == document["clv"]["quality"] == recommended["quality"] == NO_REPORT

    listed, card, document, recommended = after
    by_name = {m["name"]: m["health"] for m in listed["models"]}
    assert by_name["clv"] == card["health"] == document["clv"]["quality"] == _degraded(clv_report)
    assert by_name["reco"] == recommended["quality"] == _degraded(reco_report)
    assert recommended["quality"]["status"] == "degraded"
    assert [r.split()[1] for r in recommended["quality"]["reasons"]] == [RANKER_FEATURES[0]]
