"""Every route of the api needs a scope: a walk over its route table, in process.

The api's faust app is built as ``cdpulse api`` builds it (``create_api``), its web server
is initialised (faust's blueprints applied) and its route table read from aiohttp's
router, which faust's ``app.page`` fills. Every route and method is then called without
a token (401) and with tokens that lack the route's scope (403, naming the scope, which
must be the one ``SCOPES`` gives). The guard answers before a handler runs, so nothing
here needs Kafka or Redis. A route added without ``@guard(scope)``, or with another scope
than ``SCOPES`` says, fails here; so does a route that answers without a token and is not
on the allow-list, which is itself asserted. The browsers' CORS preflight (``OPTIONS``
on the Segment routes) is the one method answered without a token, by design (a browser
sends none with it): it is listed apart, and answers with headers only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cdpulse.app.api import create_api
from cdpulse.app.auth import ALL_SCOPES
from cdpulse.settings import ApiToken, Scope, Settings

SEGMENT_CALLS = [
    *("batch", "track", "identify", "page", "screen", "alias", "group"),
    *("b", "t", "i", "p", "s", "a", "g"),
]
# (method, route) -> the scope its handler needs. A new route belongs here, on purpose.
SCOPES: dict[tuple[str, str], Scope] = {
    ("GET", "/v1/profiles/{profile_id}"): "read",
    ("DELETE", "/v1/profiles/{profile_id}"): "admin",
    ("GET", "/v1/profiles/{profile_id}/export"): "admin",
    ("POST", "/v1/admin/merges"): "admin",
    ("GET", "/v1/profiles/{profile_id}/recommendations"): "read",
    ("GET", "/v1/profiles/{profile_id}/triggers"): "read",
    ("GET", "/v1/profiles/{profile_id}/propensity"): "read",
    ("POST", "/v1/identities/lookup"): "read",
    ("GET", "/v1/products/{product_id}/similar"): "read",
    ("POST", "/v1/events"): "ingest",
    # the Segment tracking API (app/tracking_views.py): a bearer token or the write key,
    # on its paths and analytics.js's short ones
    **{("POST", f"/v1/{call}"): "ingest" for call in SEGMENT_CALLS},
    ("GET", "/v1/segments"): "read",
    ("GET", "/v1/segments/{name}/members"): "read",
    ("GET", "/v1/experiments"): "read",
    ("GET", "/v1/experiments/{name}"): "read",
    ("POST", "/v1/experiments/{name}/assignment/{customer_id}"): "assign",
    ("GET", "/v1/rules"): "read",
    ("GET", "/v1/rules/{name}/uplift"): "read",
    ("GET", "/v1/models"): "read",
    ("GET", "/v1/models/{name}"): "read",
    ("GET", "/v1/kpis"): "read",
    ("GET", "/v1/funnels"): "read",
    ("GET", "/v1/cohorts"): "read",
    ("GET", "/v1/kpis/openapi.json"): "read",
    ("GET", "/dashboard"): "read",
    ("GET", "/dashboard/{name}"): "read",
    ("GET", "/v1/dashboard/distributions"): "read",
    ("GET", "/v1/dashboard/quality"): "read",
    ("GET", "/v1/dashboard/segments"): "read",
    ("GET", "/v1/dashboard/trust"): "read",
    ("GET", "/v1/fairness"): "read",
    ("GET", "/v1/forecasts"): "read",
    ("GET", "/v1/personas"): "read",
    ("GET", "/v1/dashboard/personas"): "read",
    ("GET", "/v1/forecasts/{category}"): "read",
    ("GET", "/v1/forecasts/products/{product_id}"): "read",
    # public by default (CDPULSE_HEALTH_PUBLIC, CDPULSE_METRICS_PUBLIC), else ``read``
    ("GET", "/healthz"): "read",
    ("GET", "/readyz"): "read",
    ("GET", "/metrics"): "read",
}
# What answers without a token under the default settings: health and metrics (public
# unless the settings say otherwise, then ``read``: above), and faust's own index, which
# answers {"status": "OK"} and nothing else. Nothing more may.
ALLOW_LIST = {"/healthz", "/readyz", "/metrics", "/"}
FAUST_INDEX = "/"
# The CORS preflights a browser sends before posting from a page, without credentials
# (app/cors.py): headers for an origin some token names, else 403; nothing else runs.
PREFLIGHTS = {("OPTIONS", f"/v1/{call}") for call in SEGMENT_CALLS}

NO_SCOPE = "no-scope-secret"
# One token per scope holding every scope but that one.
ALL_BUT = {scope: f"all-but-{scope}-secret" for scope in ALL_SCOPES}


def _settings(**overrides: Any) -> Settings:
    tokens = {"nothing": ApiToken(secret=SecretStr(NO_SCOPE), scopes=[])}
    for scope, secret in ALL_BUT.items():
        tokens[f"all-but-{scope}"] = ApiToken(
            secret=SecretStr(secret), scopes=sorted(ALL_SCOPES - {scope})
        )
    # Nothing listens on port 1: a handler that ran anyway would fail, never hang.
    return Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens=tokens,
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
        **overrides,
    )


def _web_app(settings: Settings) -> web.Application:
    app = create_api(settings)
    app.web.init_server()  # faust's blueprints, as the running api does
    application: web.Application = app.web.web_app
    return application


def routes(application: web.Application) -> set[tuple[str, str]]:
    """Every (method, path pattern) the api's web server answers."""
    out = set()
    for route in application.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        out.add((route.method, info.get("formatter") or info.get("path") or ""))
    return out


def _url(pattern: str) -> str:
    return pattern.format_map(_Anything())


class _Anything(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"x-{key}"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _call(application: web.Application, calls: list[tuple[str, str, dict[str, str]]]) -> list[Any]:
    """(status, json body or None, WWW-Authenticate) of each (method, url, headers)."""

    async def run() -> list[Any]:
        out = []
        async with TestClient(TestServer(application)) as client:
            for method, url, headers in calls:
                response = await client.request(method, url, headers=headers, data=b"")
                body = await response.read()
                json_body = response.content_type == "application/json" and body
                parsed = json.loads(body) if json_body else None
                out.append((response.status, parsed, response.headers.get("WWW-Authenticate")))
        return out

    return asyncio.run(run())


@pytest.fixture
def private() -> web.Application:
    """The api with health and metrics behind ``read`` too (an aiohttp app serves on one
    event loop: each test builds its own and makes its calls in one ``_call``)."""
    return _web_app(_settings(health_public=False, metrics_public=False))


def _walk(table: set[tuple[str, str]]) -> Iterator[tuple[str, str, Scope | None]]:
    """Each (method, route) of the table with the scope it must need (None: HEAD on a
    view without GET, which faust registers on every view and answers 405)."""
    for method, route in sorted(table):
        if route == FAUST_INDEX or (method, route) in PREFLIGHTS:
            continue
        if method == "HEAD":
            yield method, route, SCOPES.get(("GET", route))
        else:
            yield method, route, SCOPES[(method, route)]


def test_the_route_table_is_the_one_reviewed(private: web.Application) -> None:
    table = routes(private)
    unlisted = {
        (m, r)
        for m, r in table
        if m != "HEAD" and r != FAUST_INDEX and (m, r) not in SCOPES.keys() | PREFLIGHTS
    }
    assert not unlisted, (
        f"routes without a reviewed scope: {sorted(unlisted)}; give each handler "
        "@guard(scope) (app/auth.py) and add it to SCOPES"
    )
    assert set(SCOPES) <= table, f"SCOPES lists routes the api lacks: {set(SCOPES) - table}"
    assert {(m, r) for m, r in table if m == "OPTIONS"} == PREFLIGHTS
    # faust registers HEAD beside every view's methods; there is nothing else to walk
    assert {m for m, _ in table} <= {"GET", "HEAD", "POST", "DELETE", "OPTIONS"}
    assert {r for _, r in table} >= {r for _, r in SCOPES} | {FAUST_INDEX}


def test_every_route_refuses_a_request_without_a_token(private: web.Application) -> None:
    walk = list(_walk(routes(private)))
    # the last call: an unknown token is a 401 too, naming RFC 6750's error
    *answers, unknown = _call(
        private,
        [(m, _url(r), {}) for m, r, _ in walk] + [("GET", "/v1/rules", _bearer("not-a-token"))],
    )
    for (method, route, scope), (status, body, challenge) in zip(walk, answers, strict=True):
        if scope is None:  # HEAD where the view has no GET: faust's 405, no handler runs
            assert (method, status) == ("HEAD", 405), (route, status)
            continue
        assert status == 401, (method, route, status, body)
        assert challenge is not None and challenge.startswith('Bearer realm="cdpulse"')
        if body is not None:
            assert body["scope"] == scope and "Authorization: Bearer" in body["error"]
    status, body, challenge = unknown
    assert status == 401 and 'error="invalid_token"' in (challenge or ""), body


def test_every_route_refuses_a_token_without_its_scope(private: web.Application) -> None:
    walk = [(m, r, s) for m, r, s in _walk(routes(private)) if s is not None]
    calls = [(m, _url(r), _bearer(NO_SCOPE)) for m, r, _ in walk]
    calls += [(m, _url(r), _bearer(ALL_BUT[s])) for m, r, s in walk]
    answers = _call(private, calls)
    for (method, route, scope), (status, body, challenge) in zip(walk + walk, answers, strict=True):
        assert status == 403, (method, route, status, body)
        assert f'error="insufficient_scope", scope="{scope}"' in (challenge or "")
        if body is not None:  # HEAD answers carry no body
            assert body["scope"] == scope, (method, route, body)
            assert f"this route needs {scope!r}" in body["error"]


def test_every_route_counts_a_tokens_requests() -> None:
    # One request at once, then one every 1,000 s: the first (/metrics, which needs no
    # Redis) takes it, and every route answers 429 after, before its handler runs.
    token = ApiToken(
        secret=SecretStr("busy-secret"),
        scopes=sorted(ALL_SCOPES),
        request_rate=0.001,
        request_burst=1,
    )
    settings = _settings(health_public=False, metrics_public=False)
    application = _web_app(settings.model_copy(update={"api_tokens": {"busy": token}}))
    walk = [(m, r) for m, r, s in _walk(routes(application)) if s is not None]
    first, *answers = _call(
        application,
        [("GET", "/metrics", _bearer("busy-secret"))]
        + [(m, _url(r), _bearer("busy-secret")) for m, r in walk],
    )
    assert first[0] == 200
    for (method, route), (status, body, _) in zip(walk, answers, strict=True):
        assert status == 429, (method, route, status, body)
        if body is not None:
            assert "'busy' is over its limit of 0.001 requests/s" in body["error"]


def test_only_the_allow_list_answers_without_a_token() -> None:
    public = _web_app(_settings())  # the defaults: health and metrics public
    table = routes(public)
    gets = sorted(r for m, r in table if m == "GET")
    answers = _call(public, [("GET", r if "{" not in r else _url(r), {}) for r in gets])
    open_routes = {r for r, (status, _, _) in zip(gets, answers, strict=True) if status != 401}
    assert open_routes == ALLOW_LIST
    assert dict(zip(gets, answers, strict=True))[FAUST_INDEX][:2] == (200, {"status": "OK"})


def test_the_collector_refuses_events_beyond_the_tokens_scopes() -> None:
    tokens = {
        "shop-web": ApiToken(secret=SecretStr("web"), scopes=["ingest"]),
        "shop-login": ApiToken(secret=SecretStr("login"), scopes=["ingest", "identity"]),
        "dpo": ApiToken(secret=SecretStr("dpo"), scopes=["ingest", "identity", "admin"]),
    }
    application = _web_app(_settings().model_copy(update={"api_tokens": tokens}))

    def event(n: int, kind: str, **properties: Any) -> dict[str, Any]:
        return {
            "event_id": f"e-{n}",
            "type": kind,
            "timestamp": 1_767_225_600_000,
            "customer_id": "C-1",
            "anonymous_id": "A-1",
            "channel": "web",
            "properties": properties,
        }

    view = event(0, "page_viewed", url="https://shop.example/")
    identify = event(1, "identify", traits={"email": "c1@example.com"})
    consent = event(2, "consent_updated", purposes={"marketing": True})
    erase = event(3, "erasure_requested", requested_by="someone-else")

    async def post_all() -> list[tuple[int, Any]]:
        out = []
        async with TestClient(TestServer(application)) as client:
            for secret, body in [
                ("web", [view, identify, consent]),
                ("login", erase),
                ("dpo", erase),
            ]:
                response = await client.post("/v1/events", json=body, headers=_bearer(secret))
                out.append((response.status, await response.json()))
        return out

    (status, body), *erasures = asyncio.run(post_all())
    assert status == 403 and body["accepted"] == 0
    assert [(r["index"], r["event_id"], r["type"], r["scope"]) for r in body["refused"]] == [
        (1, "e-1", "identify", "identity"),
        (2, "e-2", "consent_updated", "identity"),
    ]
    assert "'shop-web' lacks scope 'identity' for identify" in body["refused"][0]["detail"]
    assert "none was accepted" in body["error"]
    # erasure is refused whatever the token holds: DELETE /v1/profiles/{id} asks for it
    for status, body in erasures:
        assert status == 403, body
        [refused] = body["refused"]
        assert (refused["index"], refused["type"], refused["scope"]) == (
            0,
            "erasure_requested",
            None,
        )
        assert "DELETE /v1/profiles/{id}" in refused["detail"]


def test_a_preflight_runs_nothing_and_no_origin_is_allowed_unless_a_token_names_it() -> None:
    application = _web_app(_settings())  # no token names an origin
    asking = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    preflights = sorted(r for _, r in PREFLIGHTS)
    for route, (status, body, _) in zip(
        preflights, _call(application, [("OPTIONS", r, asking) for r in preflights]), strict=True
    ):
        assert status == 403, (route, status, body)
        assert "add it to the 'origins' of the token" in body["error"]
