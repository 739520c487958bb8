"""The Segment routes' answers to requests that never reach Kafka: the 400s the SDKs do
not retry (bodies that are not Segment requests, over the spec's limits, gzip included)
and 403 for an identify from a write key without ``identity``. In process; what is
taken is tested against Kafka in tests/integration/test_tracking_api.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cdpulse.app.api import create_api
from cdpulse.settings import ApiToken, Settings

WEB_KEY = "web-write-key"


def _answers(calls: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[int, Any]]:
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens={"shop-web": ApiToken(secret=SecretStr(WEB_KEY), scopes=["ingest"])},
        redis_url="redis://127.0.0.1:1/0",  # nothing listens: a request must not get there
        kafka_bootstrap="127.0.0.1:1",
    )
    app = create_api(settings)
    app.web.init_server()
    key = base64.b64encode(f"{WEB_KEY}:".encode()).decode()

    async def run() -> list[tuple[int, Any]]:
        out = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for path, body, headers in calls:
                # a connection each: aiohttp closes one whose body would not unzip
                auth = {"Authorization": f"Basic {key}", "Connection": "close"}
                response = await client.post(path, data=body, headers={**auth, **headers})
                out.append((response.status, await response.json()))
        return out

    return asyncio.run(run())


def test_bodies_that_are_not_segment_requests_get_400_with_a_code() -> None:
    zipped = {"Content-Encoding": "gzip"}
    one = json.dumps({"type": "track", "userId": "u", "event": "Product Viewed"}).encode()
    calls = [
        ("/v1/batch", b"{nope", {}),
        ("/v1/batch", b"[]", {}),
        ("/v1/batch", b'{"batch": []}', {}),
        ("/v1/batch", json.dumps({"batch": [{}] * 501}).encode(), {}),
        ("/v1/batch", b"not gzip", zipped),
        # 600 KB that gzip makes small: the limit is on what it unzips to
        ("/v1/batch", gzip.compress(b'{"batch": ["' + b"x" * 600_000 + b'"]}'), zipped),
        ("/v1/track", b'{"properties": {"q": "' + b"x" * 33_000 + b'"}}', {}),
        ("/v1/track", gzip.compress(b'{"properties": {"q": "' + b"x" * 33_000 + b'"}}'), zipped),
        ("/v1/page", one, {"Content-Encoding": "gzip"}),
    ]
    codes = [
        "invalid_json",
        "not_an_object",
        "invalid_batch",
        "invalid_batch",
        "invalid_body",
        "too_large",
        "too_large",
        "too_large",
        "invalid_body",
    ]
    for (path, _, _), (status, body), code in zip(calls, _answers(calls), codes, strict=True):
        assert (status, body["code"]) == (400, code), (path, body)
        assert body["message"]


def test_an_identify_or_alias_from_an_ingest_only_write_key_is_refused_whole() -> None:
    view = {"type": "page", "userId": "C-1", "properties": {"url": "https://shop.example/"}}
    login = {"type": "identify", "userId": "C-1", "anonymousId": "A-1", "messageId": "m-2"}
    alias = {"type": "alias", "userId": "C-1", "previousId": "A-1", "messageId": "m-3"}
    calls = [
        ("/v1/batch", json.dumps({"batch": [view, login, alias]}).encode(), {}),
        ("/v1/alias", json.dumps(alias).encode(), {}),
    ]
    (status, body), (alias_status, _) = _answers(calls)
    assert (status, alias_status) == (403, 403)
    assert body["accepted"] == 0
    assert [(r["index"], r["event_id"], r["type"], r["scope"]) for r in body["refused"]] == [
        (1, "m-2", "identify", "identity"),
        (2, "m-3", "identify", "identity"),
    ]
