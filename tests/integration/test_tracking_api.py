"""Segment's own Python SDK (segment-analytics-python), RudderStack's (rudder-sdk-python)
and Segment's Node SDK (@segment/analytics-node, run by node from tests/js), each pointed
at the api with ``host``, against real Kafka, Redis, worker and api processes.

The SDK sends identify, page, e-commerce tracks and custom events (one of them against
the schema registered for it) for a few shoppers with its write key (a cdpulse token);
the profiles the worker writes must equal an oracle computed here from what the SDK was
told to send. Then the same batch is sent again, as the SDK's retry does
(same messageIds), and nothing may count twice. The SDK's retry logic then meets the
answers it must: 400 for what is too large (never retried), 401 for a bad write key, 403
for an identify from a write key without ``identity``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import subprocess
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Queue
from typing import Any

import httpx
import pytest
from rudderstack.analytics import client as rudderstack_client
from rudderstack.analytics import request as rudderstack_request
from segment.analytics.client import Client
from segment.analytics.consumer import Consumer
from segment.analytics.request import APIError, post

from tests.integration.conftest import Env, Roles, drained, wait_until
from tests.integration.js import installed
from tests.oracle import pseudonym

TOKENS = {
    "shop-server": {"secret": "server-write-key", "scopes": ["ingest", "identity"]},
    "shop-web": {"secret": "web-write-key", "scopes": ["ingest"]},
    "crm": {"secret": "crm-read", "scopes": ["read"]},
}
AUTH = {"CDPULSE_AUTH_DISABLED": "false", "CDPULSE_API_TOKENS": json.dumps(TOKENS)}
SERVER_KEY, WEB_KEY = TOKENS["shop-server"]["secret"], TOKENS["shop-web"]["secret"]
READ = {"Authorization": f"Bearer {TOKENS['crm']['secret']}"}
# The spec's event names this test sends, and the contract type each one is.
TYPES = {
    "Product Viewed": "product_viewed",
    "Product Added": "product_added",
    "Order Completed": "order_completed",
}
# The shop's own events (custom events), by the name cdpulse counts them under.
CUSTOM = {"Course Clicked": "course_clicked", "Video Played": "video_played"}
# The schema the operator registered for one of them: a course has a title.
COURSE_SCHEMA = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string", "minLength": 1}},
}


def registry(folder: Path) -> dict[str, str]:
    """The settings of a custom event schema folder holding COURSE_SCHEMA."""
    folder.mkdir()
    (folder / "course_clicked.json").write_text(json.dumps(COURSE_SCHEMA), encoding="utf-8")
    return {"CDPULSE_CUSTOM_EVENT_SCHEMAS": str(folder)}


def product(pid: str, category: str, price: float, quantity: int = 1) -> dict[str, Any]:
    return {"product_id": pid, "category": category, "price": price, "quantity": quantity}


def order(oid: str, *products: dict[str, Any], total_only: bool = False) -> dict[str, Any]:
    amount = round(math.fsum(p["price"] * p["quantity"] for p in products), 2)
    money = {"total": amount} if total_only else {"revenue": amount, "total": amount + 4.9}
    return {"order_id": oid, "currency": "EUR", "products": list(products), **money}


P1, P2 = product("P-1", "games", 19.0), product("P-2", "books", 12.5)
P3, P4, P5 = (
    product("P-3", "shoes", 59.0),
    product("P-4", "socks", 4.5),
    product("P-5", "hats", 21.0),
)
VISITOR = {"anonymous_id": "A-1"}


def step(customer: str, call: str, properties: Any = None, **args: Any) -> tuple[str, str, Any]:
    """One call of the script: the customer whose profile it lands in, the call (a page,
    an identify or a track event's name) and the SDK's arguments (the user id is the
    customer's unless the call says whose it is)."""
    who = args if "anonymous_id" in args or "user_id" in args else {"user_id": customer}
    return customer, call, {**who, **args, **({"properties": properties} if properties else {})}


def qty(line: dict[str, Any], n: int) -> dict[str, Any]:
    return {**line, "quantity": n}


# What the shop tells the SDK, in event-time order. C-1 browses as visitor A-1 and logs
# in; C-2's second order has a total only; C-3 sends custom events, the last of them
# without the title its registered schema requires (rejected: schema_violation).
SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    step("C-1", "page", {"url": "https://shop.example/"}, **VISITOR),
    step("C-1", "Product Viewed", P1, **VISITOR),
    step("C-1", "Product Added", qty(P1, 2), **VISITOR),
    step("C-1", "identify", user_id="C-1", **VISITOR, traits={
        "email": "Ada@Example.com", "plan": "gold", "address": {"city": "Paris"}}),
    step("C-1", "Order Completed", order("O-1", qty(P1, 2))),
    step("C-1", "Product Added", P2),
    step("C-2", "identify", traits={"email": "bo@example.com", "country": "FR"}),
    step("C-2", "page", {"url": "https://shop.example/sale"}),
    step("C-2", "Product Viewed", P3),
    step("C-2", "Product Added", P3),
    step("C-2", "Product Added", qty(P4, 3)),
    step("C-2", "Order Completed", order("O-2", P3, qty(P4, 3))),
    step("C-2", "Order Completed", order("O-3", P5, total_only=True)),
    step("C-3", "page", {"url": "https://shop.example/hats"}),
    step("C-3", "Product Viewed", P5),
    step("C-3", "Product Added", qty(P5, 2)),
    step("C-3", "Course Clicked", {"title": "Intro"}),
    step("C-3", "Video Played", {"seconds": 31}),
    step("C-3", "Course Clicked", {"title": "Intro"}),
    step("C-3", "Course Clicked", {"chapter": 2}),
]  # fmt: skip


def expected(script: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each customer's profile fields, from the script alone, in one linear pass."""
    calls: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    custom: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for customer, call, args in script:
        kind = {"page": "page_viewed", "identify": "identify"}.get(call) or TYPES.get(call)
        if call in CUSTOM:
            if CUSTOM[call] == "course_clicked" and "title" not in args.get("properties", {}):
                continue  # against its schema (COURSE_SCHEMA): rejected
            kind = "custom"
            custom[customer][CUSTOM[call]] += 1
        calls[customer].append((kind, args))
    profiles = {}
    for customer, mine in calls.items():
        orders = [a["properties"] for k, a in mine if k == "order_completed"]
        cart: dict[str, dict[str, Any]] = {}
        for kind, args in mine:
            if kind == "order_completed":
                cart = {}
            elif kind == "product_added":
                p = args["properties"]
                line = cart.setdefault(p["product_id"], {**p, "quantity": 0})
                line["quantity"] += p["quantity"]
        traits = {
            name: pseudonym(name, value) if name == "email" else value
            for _, args in mine
            for name, value in args.get("traits", {}).items()
            if name in {"email", "plan", "country"}
        }
        counts: dict[str, int] = defaultdict(int)
        for kind, _ in mine:
            counts[kind] += 1
        profiles[customer] = {
            "anonymous_ids": sorted({a["anonymous_id"] for _, a in mine if "anonymous_id" in a}),
            "events": len(mine),
            "counts": dict(counts),
            "orders": len(orders),
            "revenue": round(math.fsum(o.get("revenue", o["total"]) for o in orders), 2),
            "cart": [cart[p] for p in sorted(cart)],
            "traits": traits,
            # the registered name is there for every customer, zero until sent
            "custom": {"course_clicked": 0, **custom[customer]},
        }
    return profiles


# Each Python SDK: its client and the function its consumer posts a batch with (a retry).
SDKS = {
    "segment": (Client, post),
    "rudderstack": (rudderstack_client.Client, rudderstack_request.post),
}


# The script's arguments as the JavaScript SDKs name them.
CAMEL = {"user_id": "userId", "anonymous_id": "anonymousId"}


def send(client: Any, script: list[tuple[str, str, dict[str, Any]]], start: datetime) -> list[Any]:
    """Every call of the script through the SDK, a minute apart in event time; the
    messages the SDK queued."""
    sent = []
    for n, (_, call, args) in enumerate(script):
        at = start + timedelta(minutes=n)
        if call == "page":
            ok, message = client.page(timestamp=at, **args)
        elif call == "identify":
            ok, message = client.identify(timestamp=at, **args)
        else:
            ok, message = client.track(event=call, timestamp=at, **args)
        assert ok
        sent.append(message)
    client.flush()
    return sent


def profile_fields(api: str, customer: str) -> dict[str, Any] | None:
    response = httpx.get(f"{api}/v1/profiles/{customer}", headers=READ, timeout=10)
    if response.status_code == 404:
        return None
    document = response.json()
    fields = {k: document[k] for k in ("anonymous_ids", "events", "counts", "orders", "revenue")}
    fields["cart"] = document["cart"]["items"]
    fields["traits"] = document["traits"]
    fields["custom"] = {name: n["total"] for name, n in document["custom_counts"].items()}
    return fields


def wait_for(roles: Roles, want: dict[str, dict[str, Any]], what: str) -> None:
    wait_until(
        lambda: all(
            (got := profile_fields(roles.api.url, c)) is not None and got["events"] == w["events"]
            for c, w in want.items()
        ),
        120,
        what,
    )


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_events_become_exact_profiles_and_retries_count_once(
    env: Env, sdk: str, tmp_path: Path
) -> None:
    roles = env.roles(**AUTH, **registry(tmp_path / "schemas"))
    errors: list[Exception] = []
    sdk_client, sdk_post = SDKS[sdk]
    client = sdk_client(
        SERVER_KEY, host=roles.api.url, on_error=lambda e, _: errors.append(e), upload_size=5
    )
    start = datetime.now(UTC) - timedelta(hours=1)
    messages = send(client, SCRIPT, start)
    client.shutdown()
    assert errors == []

    # The SDK's retry: the same messages again, in one batch, through its own request
    # (gzipped, as the SDK sends with gzip=True).
    def resend() -> list[Any]:
        return [sdk_post(SERVER_KEY, roles.api.url, gzip=True, batch=messages).json()]

    exact_then_counted_once(env, roles, messages, resend)


def test_analytics_node_events_become_exact_profiles_and_retries_count_once(
    env: Env, tmp_path: Path
) -> None:
    roles = env.roles(**AUTH, **registry(tmp_path / "schemas"))
    start = datetime.now(UTC) - timedelta(hours=1)
    calls = []
    for n, (_, call, args) in enumerate(SCRIPT):
        named = {CAMEL.get(k, k): v for k, v in args.items()}
        named["timestamp"] = (start + timedelta(minutes=n)).isoformat()
        if call not in ("page", "identify"):
            call, named["event"] = "track", call
        calls.append({"call": call, "args": named})
    job = {"host": roles.api.url, "writeKey": SERVER_KEY, "calls": calls}
    node = subprocess.run(
        ["node", "analytics_node.mjs"],
        cwd=installed(),
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sent = json.loads(node.stdout)
    assert (sent["errors"], set(sent["statuses"])) == ([], {200}), node.stderr

    # A retry: each request body the SDK sent, again (same messageIds).
    key = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()

    def resend() -> list[Any]:
        with httpx.Client(
            base_url=roles.api.url, headers={"Authorization": f"Basic {key}"}
        ) as http:
            return [http.post("/v1/batch", json=body).json() for body in sent["requests"]]

    exact_then_counted_once(env, roles, [m for r in sent["requests"] for m in r["batch"]], resend)


def exact_then_counted_once(
    env: Env, roles: Roles, messages: list[Any], resend: Callable[[], list[Any]]
) -> None:
    """The profiles equal the oracle's for SCRIPT, sent as ``messages``; then
    ``resend()`` sends them all again, as a retry does, and they stay equal: each repeat
    was dropped (the custom event against its schema is rejected again)."""
    want = expected(SCRIPT)
    wait_for(roles, want, "the SDK's events to reach the profiles")
    wait_until(lambda: drained(env.settings), 120, "the worker to drain its topics")
    for customer, fields in want.items():
        assert profile_fields(roles.api.url, customer) == fields, customer

    duplicates = roles.worker.metric("cdpulse_duplicates_total")
    answers = resend()
    accepted = sum(a["accepted"] for a in answers)
    rejected = [r for a in answers for r in a["results"] if r["status"] == "rejected"]
    assert accepted == len(messages) - 1
    assert [(r["event_id"], r["reason"]) for r in rejected] == [
        (messages[-1]["messageId"], "schema_violation")
    ]
    assert "'properties.title': is required" in rejected[0]["detail"]
    wait_until(
        lambda: roles.worker.metric("cdpulse_duplicates_total") >= duplicates + accepted,
        120,
        "the worker to drop every repeat",
    )
    wait_until(lambda: drained(env.settings), 120, "the worker to drain its topics")
    for customer, fields in want.items():
        assert profile_fields(roles.api.url, customer) == fields, customer


def test_the_sdk_gets_the_answers_its_retry_logic_expects(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    api = env.api(**AUTH)
    errors: list[Exception] = []

    # A bad write key: 401, reported, not retried.
    client = Client("not-a-key", host=api.url, on_error=lambda e, _: errors.append(e))
    client.track(user_id="C-9", event="Product Viewed", properties=product("P-1", "games", 1.0))
    client.shutdown()
    assert [e.status for e in errors if isinstance(e, APIError)] == [401]

    # An identify from a write key without 'identity' (one that ships in web pages): 403.
    errors.clear()
    client = Client(WEB_KEY, host=api.url, on_error=lambda e, _: errors.append(e))
    client.identify(user_id="C-9", traits={"plan": "gold"})
    client.shutdown()
    assert [e.status for e in errors if isinstance(e, APIError)] == [403]

    # A batch over the spec's 500 KB: 400, which the SDK's consumer does not retry.
    big = {"type": "track", "event": "Products Searched", "userId": "C-9"}
    batch = [
        {**big, "messageId": f"m-{i}", "properties": {"query": "x" * 30_000}} for i in range(20)
    ]
    consumer = Consumer(Queue(), SERVER_KEY, host=api.url, retries=3)
    with caplog.at_level(logging.ERROR, logger="segment"), pytest.raises(APIError) as raised:
        consumer.request(batch)
    assert raised.value.status == 400
    assert "Non-retryable error 400 after 1 attempts" in caplog.text

    key = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Basic {key}"}) as http:
        # A single call over 32 KB: 400 too.
        track = {**big, "messageId": "m-big", "properties": {"query": "x" * 33_000}}
        answer = http.post("/v1/track", json=track)
        assert answer.status_code == 400 and answer.json()["code"] == "too_large"
        # One message over 32 KB inside a batch (the SDK drops such a message itself; a
        # client of one's own may not): that message is rejected, the rest taken.
        small = {**big, "messageId": "m-small", "properties": {"query": "socks"}}
        answer = http.post("/v1/batch", json={"batch": [track, small]})
        assert answer.status_code == 200
        assert [(r["status"], r.get("reason")) for r in answer.json()["results"]] == [
            ("rejected", "too_large"),
            ("accepted", None),
        ]
        # Not a Segment request: 400.
        assert http.post("/v1/batch", content=b"{nope").status_code == 400
        assert http.post("/v1/batch", json={"batch": []}).status_code == 400
