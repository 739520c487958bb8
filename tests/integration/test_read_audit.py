"""The audit of reads on the real Kafka, Redis, worker and api: every profile read,
export, identity lookup and segment listing leaves one record on the read-audit topic,
naming the token, its purpose, the route and the customers as pseudonyms, and no byte of
any record holds an id or a trait; ``cdpulse audit`` finds them by subject, token, route
and time (README: Privacy and security, Audit of reads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, consume_all, drained, wait_until
from tests.integration.test_rebuild import cdpulse, linked_visitors
from tests.oracle import pseudonym_id

TOKENS = {
    "support": {"secret": "support-secret", "scopes": ["read", "admin"], "purpose": "support"},
    "crm": {"secret": "crm-secret", "scopes": ["read"], "purpose": "crm-sync"},
}
SEGMENTS_FILE = "rfm: false\nsegments:\n  - name: everyone\n    when: orders >= 0\n"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[token]['secret']}"}


def test_reads_leave_audit_records_without_personal_data(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=12, days=4, seed=3).events())
    linked = linked_visitors(events)
    who = sorted(linked)[0]
    visitor = sorted(linked[who])[0]
    emails = {
        e["customer_id"]: e["properties"]["traits"]["email"]
        for e in events
        if e["type"] == "identify" and "email" in e["properties"].get("traits", {})
    }
    other = sorted(c for c in emails if c != who)[0]
    segments = tmp_path / "segments.yaml"
    segments.write_text(SEGMENTS_FILE, encoding="utf-8")
    api = env.roles(
        CDPULSE_SEGMENTS_FILE=str(segments),
        CDPULSE_AUTH_DISABLED="false",
        CDPULSE_API_TOKENS=json.dumps(TOKENS),
    ).api
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 120, "the shop's events to be applied")

    began = datetime.now(UTC)
    with httpx.Client(base_url=api.url, timeout=10) as http:

        def call(token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
            return http.request(method, path, headers=bearer(token), **kwargs)

        assert call("support", "GET", f"/v1/profiles/{who}").status_code == 200
        by_visitor = call("crm", "GET", f"/v1/profiles/{visitor}")
        assert by_visitor.json()["customer_id"] == who  # a linked visitor reads the customer
        assert call("support", "GET", f"/v1/profiles/{who}/export").status_code == 200
        email = {"trait": "email", "value": emails[other]}
        lookup = call("support", "POST", "/v1/identities/lookup", json=email)
        assert lookup.json()["profile_id"] == other
        listing = call("crm", "GET", "/v1/segments/everyone/members", params={"limit": 1000})
        members = listing.json()["members"]
        assert who in members and other in members
        assert call("crm", "GET", "/v1/profiles/nobody-here").status_code == 404
        assert call("crm", "GET", "/v1/rules").status_code == 200  # names no one: no record

    expected = {
        ("support", "support", "GET", "/v1/profiles/{profile_id}", 200, (who,)),
        ("crm", "crm-sync", "GET", "/v1/profiles/{profile_id}", 200, (visitor, who)),
        ("support", "support", "GET", "/v1/profiles/{profile_id}/export", 200, (who,)),
        ("support", "support", "POST", "/v1/identities/lookup", 200, (other,)),
        ("crm", "crm-sync", "GET", "/v1/segments/{name}/members", 200, tuple(members)),
        ("crm", "crm-sync", "GET", "/v1/profiles/{profile_id}", 404, ("nobody-here",)),
    }
    found = consume_all(env.settings, env.settings.topic_read_audit, len(expected))
    records = [json.loads(r.value) for r in found]
    assert len(records) == len(expected), records
    assert {
        (
            r["token"],
            r["purpose"],
            r["method"],
            r["route"],
            r["status"],
            tuple(r["subjects"]),
        )
        for r in records
    } == {(*rest, tuple(pseudonym_id(i) for i in ids)) for *rest, ids in expected}
    assert {r["audit"] for r in records} == {"read"}
    assert [r["params"] for r in records if r["route"].startswith("/v1/segments")] == [
        {"name": "everyone"}
    ]
    begun_ms = int(began.timestamp() * 1000)
    assert all(begun_ms <= r["at"] <= begun_ms + 600_000 for r in records)

    # No id, visitor id or trait of anyone in the shop in any byte of the topic.
    personal = {e.get(k) for e in events for k in ("customer_id", "anonymous_id")} - {None}
    personal |= {"nobody-here", *emails.values()}
    traits = [t for e in events for t in e.get("properties", {}).get("traits", {}).values()]
    personal |= {t for t in traits if isinstance(t, str)}
    for record in found:
        for value in personal:
            assert str(value).encode() not in record.value, (value, record.value)
            assert str(value).encode() not in (record.key or b""), value

    # cdpulse audit finds them by subject (the id, pseudonymised by the CLI), token, route,
    # time; each record once.
    def audit(*args: str, scanned: int = len(expected)) -> list[dict[str, Any]]:
        done = cdpulse(env, "audit", *args)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert f"{len(lines)} of {scanned} records matched" in done.stderr, done.stderr
        return lines

    about_who = audit("--subject", who)
    assert sorted(r["route"] for r in about_who) == [
        "/v1/profiles/{profile_id}",
        "/v1/profiles/{profile_id}",
        "/v1/profiles/{profile_id}/export",
        "/v1/segments/{name}/members",
    ]
    assert [r["at"] for r in about_who] == sorted(r["at"] for r in about_who)
    assert len(audit("--subject", pseudonym_id(visitor))) == 1
    listed = audit("--token", "crm", "--route", "/v1/segments/*")
    assert [r["route"] for r in listed] == ["/v1/segments/{name}/members"]
    assert len(audit("--purpose", "support", "--since", "10m")) == 3
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert audit("--since", later, scanned=0) == []  # seeks past every record
    assert audit("--until", began.isoformat()) == []

    ready = httpx.get(f"{api.url}/readyz", timeout=10).json()
    assert ready["ready"] and ready["read_audit"] == {
        "queued": 0,
        "sent": len(expected),
        "dropped": 0,
    }
    assert api.metric("cdpulse_read_audit_sent_total") == len(expected)
    assert api.metric("cdpulse_read_audit_dropped_total") == 0
