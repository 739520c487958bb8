"""The admin merge of two known customers (README: Identity rules) through real Kafka,
Redis, worker and api: POST /v1/admin/merges with an admin token merges the merged
customer into the survivor once, later events of either id go to the survivor (as the
oracle says), a refused merge is dead-lettered ``merge_refused``, the audit topic holds
every request with ``requested_by`` = the token's name, no token may send the event to
the collector, and erasing the survivor erases the merged customer's ids too."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from cdpulse.producer import Producer
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.integration.test_identity import event
from tests.oracle import differences, expected, pseudonym_id

TOKENS = {
    "crm": {"secret": "read-secret", "scopes": ["read"]},
    "login": {"secret": "login-secret", "scopes": ["ingest", "identity"]},
    "ops": {"secret": "admin-secret", "scopes": ["read", "ingest", "identity", "admin"]},
}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_an_admin_merge_through_the_engine(env: Env) -> None:
    roles = env.roles(CDPULSE_AUTH_DISABLED="false", CDPULSE_API_TOKENS=json.dumps(TOKENS))
    admin, read = bearer("admin-secret"), bearer("read-secret")
    first = [
        event(1, "order_completed", customer_id="A"),
        event(2, "page_viewed", customer_id="B"),
        event(3, "order_completed", customer_id="B"),
        event(4, "page_viewed", anonymous_id="V"),
        event(5, "identify", customer_id="B", anonymous_id="V"),
    ]
    # After the merge: B's own events, its visitor's, and A's.
    second = [
        event(6, "page_viewed", customer_id="B"),
        event(7, "page_viewed", anonymous_id="V"),
        event(8, "page_viewed", customer_id="A"),
    ]
    with Producer.from_settings(env.settings) as producer:
        for e in first:
            producer.send(e)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the first part")

    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        body = {"customer_id": "A", "merged_id": "B"}
        denied = http.post("/v1/admin/merges", json=body, headers=read)
        assert denied.status_code == 403 and "'admin'" in denied.json()["error"]
        bad = http.post("/v1/admin/merges", json={"customer_id": "A"}, headers=admin)
        assert bad.status_code == 400 and "'merged_id'" in bad.json()["error"]
        # the collector refuses the event type for every token, the admin's too
        forged = {**event(9, "page_viewed", customer_id="A"), "type": "customers_merged"}
        forged["properties"] = {"merged_id": "B", "requested_by": "forged"}
        for token in TOKENS.values():
            posted = http.post("/v1/events", json=forged, headers=bearer(token["secret"]))
            assert posted.status_code == 403, posted.text
            if "ingest" in token["scopes"]:
                assert posted.json()["refused"][0]["scope"] is None  # no scope may
            else:
                assert "lacks scope 'ingest'" in posted.json()["error"]

        accepted = http.post("/v1/admin/merges", json=body, headers=admin)
        assert accepted.status_code == 202, accepted.text
        unknown = {"customer_id": "A", "merged_id": "nobody"}
        assert http.post("/v1/admin/merges", json=unknown, headers=admin).status_code == 202
        wait_until(lambda: drained(env.settings), 120, "the worker to apply the merges")
        with Producer.from_settings(env.settings) as producer:
            for e in second:
                producer.send(e)
        wait_until(lambda: drained(env.settings), 120, "the worker to apply the second part")

        # the merges as the worker read them: on the customers topic, keyed by survivor
        merges = [
            r
            for r in consume_all(env.settings, env.settings.topic_customers, 2)
            if json.loads(r.value)["type"] == "customers_merged"
        ]
        assert [r.key for r in merges] == [b"A", b"A"]
        assert json.loads(merges[0].value)["event_id"] == accepted.json()["event_id"]
        stream = [*first, *(json.loads(r.value) for r in merges), *second]
        truth = expected(stream, now=datetime.now(UTC))
        assert set(truth.profiles) == {"A"}
        for profile_id in ("A", "B", "V"):
            got = http.get(f"/v1/profiles/{profile_id}", headers=read).json()
            problems = differences(got, truth.profiles["A"])
            assert not problems, f"{profile_id}: " + "; ".join(problems)

        letters = [
            json.loads(r.value)
            for r in consume_all(env.settings, env.settings.topic_dead_letter, 1)
        ]
        assert [(d["reason"], d["event_id"]) for d in letters] == [
            ("merge_refused", json.loads(merges[1].value)["event_id"])
        ]
        assert "unknown_customer" in letters[0]["detail"]
        audits = [
            json.loads(r.value) for r in consume_all(env.settings, env.settings.topic_audit, 2)
        ]
        assert [(a["audit"], a["requested_by"], a["outcome"]) for a in audits] == [
            ("customers_merged", "ops", "merged"),
            ("customers_merged", "ops", "unknown_customer"),
        ]
        assert audits[0]["survivor"] == pseudonym_id("A")
        assert audits[0]["merged"] == pseudonym_id("B")
        worker = roles.worker
        assert worker.metric("cdpulse_customer_merges_total", {"outcome": "merged"}) == 1
        assert worker.metric("cdpulse_customer_merges_total", {"outcome": "unknown_customer"}) == 1

        # Erasing the survivor erases the merged customer's ids and its visitor's too.
        assert http.delete("/v1/profiles/B", headers=admin).status_code == 202
        wait_until(
            lambda: http.get("/v1/profiles/A", headers=read).status_code == 404, 60, "A erased"
        )
        for profile_id in ("B", "V"):
            assert http.get(f"/v1/profiles/{profile_id}", headers=read).status_code == 404
        left: list[Any] = sorted(env.redis.scan_iter(match=f"{env.name}:{{[ABV]}}:*"))
        assert left == []
