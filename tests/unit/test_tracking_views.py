"""The Segment routes' answers to requests that never reach Kafka: the 400s the SDKs do
not retry (bodies that are not Segment requests, over the spec's limits, gzip included),
403 for an identify from a write key without ``identity``, and what browsers get: CORS
per write key, ``text/plain`` bodies, the write key in the body. In process; what is
taken is tested against Kafka in tests/integration/test_tracking_api.py and, from a
browser, tests/integration/test_tracking_browser.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cdpulse.app.api import create_api
from cdpulse.app.tracking_views import _messages
from cdpulse.settings import ApiToken, Settings

WEB_KEY, BLOG_KEY = "web-write-key", "blog-write-key"
SHOP, BLOG, ELSEWHERE = "https://shop.example", "http://blog.example:8080", "https://else.example"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WEB_KEY}:".encode()).decode()}
# A message the integrations keep from cdpulse: answered 200 without reaching Kafka.
SKIPPED = {"type": "page", "anonymousId": "A-1", "integrations": {"cdpulse": False}}

Exchange = tuple[str, str, bytes, dict[str, str]]  # method, path, body, headers


def _exchanges(calls: list[Exchange]) -> list[tuple[int, Any, dict[str, str]]]:
    """(status, JSON body or None, headers) of each call, headers as given (aiohttp's
    client adds no Content-Type of its own)."""
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens={
            "shop-web": ApiToken(secret=SecretStr(WEB_KEY), scopes=["ingest"], origins=[SHOP]),
            "blog": ApiToken(secret=SecretStr(BLOG_KEY), scopes=["ingest"], origins=[BLOG]),
        },
        redis_url="redis://127.0.0.1:1/0",  # nothing listens: a request must not get there
        kafka_bootstrap="127.0.0.1:1",
    )
    app = create_api(settings)
    app.web.init_server()

    async def run() -> list[tuple[int, Any, dict[str, str]]]:
        out = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for method, path, body, headers in calls:
                # a connection each: aiohttp closes one whose body would not unzip
                response = await client.request(
                    method,
                    path,
                    data=body,
                    headers={"Connection": "close", **headers},
                    skip_auto_headers=["Content-Type"],
                )
                parsed = (
                    await response.json() if response.content_type == "application/json" else None
                )
                out.append((response.status, parsed, dict(response.headers)))
        return out

    return asyncio.run(run())


def _answers(calls: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[int, Any]]:
    """(status, JSON body) of each POST with the shop's write key (HTTP Basic)."""
    exchanges = [("POST", path, body, {**BASIC, **headers}) for path, body, headers in calls]
    return [(status, body) for status, body, _ in _exchanges(exchanges)]


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


def test_a_preflight_allows_an_origin_some_token_names_and_no_other() -> None:
    asking = {"Access-Control-Request-Method": "POST"}
    asking_with_auth = {**asking, "Access-Control-Request-Headers": "authorization,x-retry-count"}
    (shop, _, allowed), (blog, _, _), (other, body, refused), (none, _, _) = _exchanges(
        [
            ("OPTIONS", "/v1/t", b"", {"Origin": SHOP, **asking_with_auth}),
            ("OPTIONS", "/v1/batch", b"", {"Origin": BLOG, **asking}),
            ("OPTIONS", "/v1/b", b"", {"Origin": ELSEWHERE, **asking}),
            ("OPTIONS", "/v1/b", b"", asking),
        ]
    )
    assert (shop, blog, other, none) == (204, 204, 403, 403)
    assert allowed["Access-Control-Allow-Origin"] == SHOP
    assert allowed["Access-Control-Allow-Methods"] == "POST"
    assert {"Authorization", "Content-Type", "X-Retry-Count"} <= set(
        allowed["Access-Control-Allow-Headers"].split(", ")
    )
    assert "Access-Control-Allow-Credentials" not in allowed
    assert "Access-Control-Allow-Origin" not in refused and refused["Vary"] == "Origin"
    assert "'https://else.example' may not send here" in body["error"]


def test_a_page_sends_with_its_own_tokens_origins_only() -> None:
    batch = json.dumps({"batch": [SKIPPED]}).encode()
    (shop, ok, to_shop), (blog, refusal, to_blog), (other, _, to_other), (server, _, _) = (
        _exchanges(
            [
                ("POST", "/v1/b", batch, {**BASIC, "Origin": SHOP}),
                # the shop's key from the blog's page: the blog is allowed, not with this key
                ("POST", "/v1/b", batch, {**BASIC, "Origin": BLOG}),
                ("POST", "/v1/b", batch, {**BASIC, "Origin": ELSEWHERE}),
                ("POST", "/v1/b", batch, BASIC),  # a server: no Origin
            ]
        )
    )
    assert (shop, blog, other, server) == (200, 403, 403, 200)
    assert ok["skipped"] == 1
    assert to_shop["Access-Control-Allow-Origin"] == SHOP
    # the blog's page reads the refusal (its origin is allowed), which names the fix
    assert to_blog["Access-Control-Allow-Origin"] == BLOG
    assert (
        "token 'shop-web' may not send from web page 'http://blog.example:8080'"
        in (refusal["error"])
    )
    assert "Access-Control-Allow-Origin" not in to_other
    assert all("*" not in h.get("Access-Control-Allow-Origin", "") for h in (to_shop, to_blog))


def test_analytics_js_bodies_text_plain_or_untyped_with_the_write_key_inside() -> None:
    # analytics.js before 1.84: no Authorization header, the key in each message (and in a
    # batch's body), Content-Type text/plain; sendBeacon may send no type at all.
    page = {**SKIPPED, "writeKey": WEB_KEY, "messageId": "ajs-1"}
    login = {"type": "identify", "userId": "C-1", "messageId": "ajs-2", "writeKey": WEB_KEY}
    plain = {"Origin": SHOP, "Content-Type": "text/plain"}
    calls: list[Exchange] = [
        ("POST", "/v1/p", json.dumps(page).encode(), plain),
        ("POST", "/v1/b", json.dumps({"batch": [page], "writeKey": WEB_KEY}).encode(), {}),
        # the key was read: an identify needs 'identity', which this key lacks
        ("POST", "/v1/i", json.dumps(login).encode(), plain),
        ("POST", "/v1/p", json.dumps({**page, "writeKey": "guess"}).encode(), plain),
        ("POST", "/v1/p", json.dumps({**page, "writeKey": None}).encode(), plain),
        ("POST", "/v1/p", b"{nope", plain),
    ]
    answers = _exchanges(calls)
    assert [status for status, _, _ in answers] == [200, 200, 403, 401, 401, 401]
    (_, one, headers), (_, batch, _), (_, refused, _), (_, unknown, guessed), *_ = answers
    assert one["results"] == [{"index": 0, "event_id": "ajs-1", "status": "skipped"}]
    assert batch["skipped"] == 1
    assert refused["refused"][0]["scope"] == "identity"
    assert headers["Access-Control-Allow-Origin"] == guessed["Access-Control-Allow-Origin"] == SHOP
    assert "'shop-web'" not in json.dumps(unknown)


def test_the_write_key_inside_a_message_goes_no_further() -> None:
    messages, _ = _messages({"batch": [{"type": "page", "writeKey": WEB_KEY}, 7]}, None)
    assert messages == [{"type": "page"}, 7]
    [message], _ = _messages({"type": "page", "writeKey": WEB_KEY}, "page")
    assert message == {"type": "page"}
