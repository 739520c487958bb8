"""Every HTTP request is timed by its route's pattern, never by its path (ids)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY, generate_latest
from pydantic import SecretStr

from cdpulse.app.api import create_api
from cdpulse.settings import Settings


def count(route: str, method: str) -> float:
    labels = {"route": route, "method": method}
    return REGISTRY.get_sample_value("cdpulse_http_request_seconds_count", labels) or 0.0


def test_requests_are_timed_by_route_pattern_and_method() -> None:
    # Tokens required and nothing listening on port 1: the guard answers 401 before any
    # handler would need Redis or Kafka.
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
    )
    app = create_api(settings)
    app.web.init_server()
    application: web.Application = app.web.web_app
    profile = ("/v1/profiles/{profile_id}", "GET")
    unmatched = ("unmatched", "GET")
    before = count(*profile), count(*unmatched)

    async def calls() -> list[int]:
        async with TestClient(TestServer(application)) as client:
            return [(await client.get(path)).status for path in ("/v1/profiles/C-4711", "/no/such")]

    assert asyncio.run(calls()) == [401, 404]  # refused or unknown: timed all the same
    assert (count(*profile), count(*unmatched)) == (before[0] + 1, before[1] + 1)
    assert b"C-4711" not in generate_latest()
