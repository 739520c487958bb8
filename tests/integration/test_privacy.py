"""Privacy against the real Kafka, Redis and processes: erasure mid-stream, then a scan of
every Redis key and every output topic; the ledger; export (README: Privacy and security).
The worker carries erasures out; the api takes the requests and serves the reads; the
learner forgets the erased in the recommender and publishes the lists."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from cdpulse.connections import BlockingRedis, async_redis, blocking_redis
from cdpulse.contract.topics import Topics
from cdpulse.pipeline.state import Changes, Save, SaveStatus
from cdpulse.privacy.data_keys import unseal
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.producer import Producer
from cdpulse.profile.model import Profile
from cdpulse.simulate.shop import Shop
from cdpulse.store.acl import setuser_command
from cdpulse.store.erasure import Eraser
from cdpulse.store.experiments import RedisExperimentStore
from cdpulse.store.keys import keys_for
from cdpulse.store.ledger import RedisLedger
from cdpulse.store.state import RedisState
from tests.integration.conftest import Env, caught_up, consume_all, drained, wait_until
from tests.integration.test_rebuild import cdpulse, linked_visitors
from tests.oracle import PSEUDONYM_KEY, pseudonym, pseudonym_id
from tests.unit.test_dead_letters import EMAIL, HOSTILE, PHONE, PLANTED


def _values(client: BlockingRedis, key: bytes) -> list[bytes]:
    """Every byte string a key holds, whatever its type."""
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [b for kv in client.hgetall(key).items() for b in kv]
    if kind == b"zset":
        return [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    return []


def audited(env: Env, count: int) -> bool:
    """Whether ``count`` erasures were carried out: the worker publishes an erasure's audit
    record once every key of it is gone (the profile goes first, the sweeps after)."""
    records = consume_all(env.settings, env.settings.topic_audit, count, timeout=5)
    return len(records) >= count


def test_erased_customers_leave_nothing_readable_in_redis_or_the_output_topics(env: Env) -> None:
    events = list(Shop(customers=150, days=20, seed=7).events())
    half = len(events) // 2
    linked = linked_visitors(events[:half])
    # customers linked to a visitor and active in both halves: erased mid-stream
    later = {e.get("customer_id") for e in events[half:]}
    chosen = sorted(c for c in linked if c in later)[:4]
    assert len(chosen) == 4, "the shop must give customers active on both sides of the cut"
    by_http, by_event = chosen[:2], chosen[2:]
    erased_ids = {i for c in chosen for i in (c, *linked[c])}
    emails = {f"{c}@example.com" for c in chosen}
    # One of them gave two emails before the shop's: every one is indexed, and erased.
    earlier = [f"{by_event[0]}.{n}@example.net" for n in range(2)]
    emails.update(earlier)
    start = datetime.fromisoformat(events[0]["timestamp"])  # before the shop's events
    changes = [
        {
            "event_id": f"email-{n}",
            "type": "identify",
            "timestamp": (start - timedelta(seconds=2 - n)).isoformat().replace("+00:00", "Z"),
            "customer_id": by_event[0],
            "channel": "web",
            "properties": {"traits": {"email": email}},
        }
        for n, email in enumerate(earlier)
    ]

    roles = env.roles(learner=True, CDPULSE_RECO_SNAPSHOT_SECONDS="0.5")
    worker, api = roles.worker, roles.api
    for change in changes:  # a batch each: a batch indexes the traits it ends with
        with Producer.from_settings(env.settings) as producer:
            producer.send(change)
        wait_until(lambda: drained(env.settings), 60, "the email change to be applied")
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the first half to be applied")
    for email in earlier:
        entry = keys_for(env.redis, env.name).identity(pseudonym("email", email))
        assert env.redis.get(entry) == by_event[0].encode(), "earlier emails stay indexed"

    with httpx.Client(base_url=api.url, timeout=10) as http:
        export = http.get(f"/v1/profiles/{chosen[0]}/export")
        assert export.status_code == 200
        document = export.json()
        assert document["customer_id"] == chosen[0]
        assert set(document["linked_ids"]) == {chosen[0], *linked[chosen[0]]}
        assert document["stored_profile"]["offsets"] and document["records_held"]
        assert document["profile"]["traits"]["email"] == pseudonym(
            "email", f"{chosen[0]}@example.com"
        )
        assert f"{chosen[0]}@example.com" not in export.text
        for customer in by_http:
            # an anonymous id resolves to its customer: erasing it erases the customer
            visitor = sorted(linked[customer])[0]
            response = http.delete(f"/v1/profiles/{visitor}")
            assert response.status_code == 202, response.text
    with Producer.from_settings(env.settings) as producer:
        for n, customer in enumerate(by_event):
            producer.send(
                {
                    "event_id": f"erase-{n}",
                    "type": "erasure_requested",
                    "timestamp": events[half]["timestamp"],
                    "customer_id": customer,
                    "channel": "call_center",
                    "properties": {"requested_by": "support-desk", "reason": "customer call"},
                }
            )
        # the rest of the stream: their new events, and a replay of their old ones
        for event in events[half:]:
            producer.send(event)
        replayed = [
            e for e in events[:half] if {e.get("customer_id"), e.get("anonymous_id")} & erased_ids
        ]
        for event in replayed:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the second half to be applied")
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_reco_events),
        120,
        "the recommender's learner to forget them",
    )
    assert worker.metric("cdpulse_erasures_total") == 4
    assert worker.metric("cdpulse_events_of_erased_total") >= len(replayed)

    # Redis: no key names them, no value holds their ids, emails or pseudonyms (the
    # ledger excepted: it keeps their pseudonyms so that they stay erased).
    client = env.redis
    ledger = f"{env.name}:erasure:ledger".encode()
    secrets = {s.encode() for s in erased_ids | emails}
    pseudonyms = {pseudonym_id(i).encode() for i in erased_ids}
    pseudonyms |= {pseudonym("email", e).encode() for e in emails}
    keys = list(client.scan_iter(match=f"{env.name}:*", count=1000))
    assert len(keys) > 100
    for key in keys:
        assert not any(s in key for s in secrets | pseudonyms), key
        if key == ledger:
            continue
        for value in _values(client, key):
            leaked = [s for s in secrets | pseudonyms if s in value]
            assert not leaked, (key, leaked[:2])
    assert len(client.hgetall(ledger)) == len(erased_ids)

    with httpx.Client(base_url=api.url, timeout=10) as http:
        for i in erased_ids:
            assert http.get(f"/v1/profiles/{i}").status_code == 404
            assert http.get(f"/v1/profiles/{i}/export").status_code == 404
        kept = sorted(c for c in linked if c not in chosen)[0]
        assert http.get(f"/v1/profiles/{kept}").status_code == 200

    # Output topics: never their ids or emails; a compacted topic's newest record per
    # erased id is a tombstone.
    topics = Topics.from_settings(env.settings)
    for topic in (topics.dead_letter, topics.training, topics.reco_events):
        for record in consume_all(env.settings, topic, 0, timeout=10):
            assert not any(s in record.value for s in secrets | {e.encode() for e in emails})
            assert record.key is None or record.key not in secrets
    newest: dict[bytes, bytes | None] = {}
    for record in consume_all(env.settings, topics.recommendations, 1):
        newest[record.key] = record.value
    for i in erased_ids:
        assert newest.get(i.encode(), "absent") in (None, "absent"), i
    assert any(value is not None for value in newest.values())
    # Every compacted topic (triggers too) ends each erased id with a tombstone.
    for topic in topics.compacted:
        last: dict[bytes, bytes | None] = {}
        for record in consume_all(env.settings, topic, 0, timeout=10):
            last[record.key] = record.value
        for i in erased_ids:
            assert last.get(i.encode(), "absent") in (None, "absent"), (topic, i)
    for record in consume_all(env.settings, topics.offer_rewards, 0, timeout=10):
        assert not any(s in record.value for s in secrets), "offer rewards name a customer"

    # A rebuild from the whole Kafka history does not bring them back either.
    target = f"{env.name}-rebuilt"
    done = cdpulse(env, "rebuild", "--target-prefix", target)
    assert done.returncode == 0, done.stderr
    rebuilt = list(client.scan_iter(match=f"{target}:*", count=1000))
    assert rebuilt and not any(s in key for key in rebuilt for s in secrets)

    audit = [json.loads(r.value) for r in consume_all(env.settings, topics.audit, 4)]
    assert len(audit) == 4
    assert sorted(a["subject"] for a in audit) == sorted(pseudonym_id(c) for c in chosen)
    assert {a["requested_by"] for a in audit} == {"auth-disabled", "support-desk"}
    for record in audit:
        assert record["removed"]["profile"] >= 1 and record["removed"]["alias"] >= 1
        assert record["erased_at"] and record["event_id"]
        text = json.dumps(record).encode()
        assert not any(s in text for s in secrets)


def test_erasure_scans_nothing_and_leaves_no_identity_entry_claim_or_membership(
    env: Env,
) -> None:
    """A customer who changed email twice, fired and converted a trigger, converted in an
    experiment, entered segments (one only its profile records) and linked two visitors
    is erased by an eraser logged in as a user that may not SCAN: nothing names them
    after, earlier emails included, and what another customer took since stays theirs."""
    names = Pseudonymizer(PSEUDONYM_KEY)
    emails = [names.pseudonym("email", f"erin{n}@example.com") for n in range(3)]
    customer, visitors, other = "C-9", ["A-9a", "A-9b"], "C-8"
    user, password = f"noscan-{env.name}", f"pw-{env.name}"
    admin = env.redis
    on_every_node(admin, *setuser_command(env.settings, user, f">{password}"), "-scan")
    keys = keys_for(admin, env.name)

    async def run() -> dict[str, int]:
        client = async_redis(env.settings.redis_url)
        confined = async_redis(env.settings.redis_url, username=user, password=password)
        state = RedisState(client, env.name, pseudonym=names.of_id, shard_of=lambda i: 0)
        try:

            def saved(version: int, email: str, **changes: Any) -> Changes:
                profile = Profile(
                    id=customer,
                    customer_id=customer,
                    events=version + 1,
                    anonymous_ids=visitors,
                    traits={"email": (version, email)},
                    segments={"vip": 1, "lapsed": 1},
                )
                return Changes([Save(profile, version, identities=[email], **changes)])

            experiments = RedisExperimentStore(client, env.name)
            await experiments.expose("checkout", customer, "green", 1)
            await experiments.expose("retired", visitors[0], "control", 1)  # no longer declared
            writes = [
                saved(
                    0,
                    emails[0],
                    links=visitors,
                    entered=["vip", "lapsed"],
                    churn_due=10,
                    trigger_due=10,
                    summary=b"{}",
                    pseudonym=names.of_id(customer),
                    tallies=[("t1", "cart", "treated")],
                ),
                saved(1, emails[1], tallies=[("t1:converted", "cart", "treated_converted")]),
                saved(2, emails[2], conversions=[("checkout", "green")]),
            ]
            for changes in writes:
                assert await state.write(changes) == {customer: SaveStatus.SAVED}
            # Another customer gives the first email since: that entry is theirs now.
            taken = Profile(id=other, customer_id=other, traits={"email": (5, emails[0])})
            assert await state.write(Changes([Save(taken, 0, identities=[emails[0]])])) == {
                other: SaveStatus.SAVED
            }
            for email in emails[1:]:
                assert await client.get(keys.identity(email)) == customer.encode()
            assert await client.hkeys(keys.claimed(customer)) == [b"t1", b"t1:converted"]

            ledger = RedisLedger(confined, keys.erasure_ledger, names)
            eraser = Eraser(
                confined,
                env.name,
                ledger,
                names,
                segments=["vip"],  # "lapsed" only in the profile
                experiments=["checkout"],
            )
            targets = await eraser.find(visitors[1])
            erasure = await eraser.erase(targets, "test", "e-1", 1, 2)
            assert sorted(erasure.ids) == sorted([customer, *visitors])
            return erasure.removed
        finally:
            await client.aclose()
            await confined.aclose()

    try:
        removed = asyncio.run(run())
        assert _acl_denials(admin, user) == []
    finally:
        on_every_node(admin, "ACL", "DELUSER", user)
    assert removed["identity"] == 2 and removed["trigger_claims"] == 2, removed
    assert removed["segment_memberships"] == 2 and removed["experiment_records"] == 3, removed

    # The check may scan; the eraser did not. The ledger keeps the ids' pseudonyms.
    ids = [customer, *visitors]
    named = {i.encode() for i in ids} | {names.of_id(i).encode() for i in ids}
    named |= {e.encode() for e in emails[1:]}
    theirs = {keys.identity(emails[0]).encode(), keys.profile(other).encode()}
    found = list(admin.scan_iter(match=f"{env.name}:*", count=1000))
    assert len(found) > 5
    for key in found:
        assert not any(n in key for n in named), key
        if key in (keys.erasure_ledger.encode(), *theirs):
            continue
        for value in _values(admin, key):
            assert not any(n in value for n in named), (key, value)
    assert admin.get(keys.identity(emails[0])) == other.encode()
    assert admin.hkeys(keys.identities(other)) == [emails[0].removeprefix("hmac:").encode()]


def test_the_api_needs_tokens_with_scopes_and_limits_each_token(env: Env) -> None:
    tokens = {
        "shop": {"secret": "ingest-secret", "scopes": ["ingest"]},
        "login": {"secret": "login-secret", "scopes": ["ingest", "identity"]},
        "storefront": {"secret": "assign-secret", "scopes": ["assign"]},
        "crm": {"secret": "read-secret", "scopes": ["read"]},
        "dpo": {"secret": "admin-secret", "scopes": ["read", "admin"]},
        # its own request limit: 2 at once, then one every 100 s
        "noisy": {
            "secret": "noisy-secret",
            "scopes": ["read"],
            "request_rate": 0.01,
            "request_burst": 2,
        },
    }
    roles = env.roles(
        CDPULSE_AUTH_DISABLED="false",
        CDPULSE_API_TOKENS=json.dumps(tokens),
        CDPULSE_METRICS_PUBLIC="false",
        CDPULSE_INGEST_RATE="0.01",
        CDPULSE_INGEST_BURST="3",
    )

    def bearer(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    event = {
        "event_id": "e-1",
        "type": "page_viewed",
        "timestamp": 1_767_225_600_000,
        "customer_id": "C-1",
        "channel": "web",
        "properties": {"url": "https://shop.example/"},
    }
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200  # public by default
        refused = http.get("/metrics")
        assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
        assert "Authorization: Bearer" in refused.json()["error"]
        assert http.get("/metrics", headers=bearer("read-secret")).status_code == 200
        assert http.get("/v1/profiles/C-1", headers=bearer("wrong")).status_code == 401
        # Every scoped route counts a token's requests, whichever route they go to.
        assert http.get("/v1/segments", headers=bearer("noisy-secret")).status_code == 200
        assert http.get("/v1/rules", headers=bearer("noisy-secret")).status_code == 200
        slowed = http.get("/v1/profiles/C-1", headers=bearer("noisy-secret"))
        assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
        assert "'noisy' is over its limit of 0.01 requests/s" in slowed.json()["error"]
        assert http.get("/v1/segments", headers=bearer("read-secret")).status_code == 200

        posted = http.post("/v1/events", json=event, headers=bearer("read-secret"))
        assert posted.status_code == 403 and "lacks scope 'ingest'" in posted.json()["error"]
        # An ingest token sends behaviour only: an identify (a merge, traits) or a consent
        # change needs 'identity', and the whole request is refused, naming the event.
        identify = {
            **event,
            "event_id": "e-id",
            "type": "identify",
            "anonymous_id": "A-1",
            "properties": {"traits": {"plan": "gold"}},
        }
        consent = {
            **event,
            "event_id": "e-consent",
            "type": "consent_updated",
            "properties": {"purposes": {"marketing": True}},
        }
        mixed = http.post(
            "/v1/events", json=[event, identify, consent], headers=bearer("ingest-secret")
        )
        assert mixed.status_code == 403, mixed.text
        assert [(r["index"], r["type"], r["scope"]) for r in mixed.json()["refused"]] == [
            (1, "identify", "identity"),
            (2, "consent_updated", "identity"),
        ]
        assert mixed.json()["accepted"] == 0
        # Erasure is never an event a client sends: DELETE /v1/profiles/{id} (admin) asks.
        erase = {
            **event,
            "event_id": "e-erase",
            "type": "erasure_requested",
            "properties": {"requested_by": "someone-else"},
        }
        refused = http.post("/v1/events", json=erase, headers=bearer("login-secret"))
        assert refused.status_code == 403 and refused.json()["refused"][0]["scope"] is None
        assert (
            http.post("/v1/events", json=identify, headers=bearer("login-secret")).status_code
            == 200
        )
        assert (
            http.post("/v1/events", json=event, headers=bearer("ingest-secret")).status_code == 200
        )
        # the bucket holds 3 events and refills at 0.01/s: 3 more do not fit
        limited = http.post("/v1/events", json=[event] * 3, headers=bearer("ingest-secret"))
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "'shop' is over its limit" in limited.json()["error"]
        # One bucket per token for every route that ingests: the Segment routes (the token
        # as a write key) find it as empty, though nothing was sent through them yet.
        track = {
            "type": "track",
            "userId": "C-1",
            "event": "Product Viewed",
            "properties": {"product_id": "p-1", "category": "games", "price": 1.0},
        }
        segment = http.post(
            "/v1/batch",
            json={"batch": [{**track, "messageId": f"m-{i}"} for i in range(3)]},
            auth=("ingest-secret", ""),
        )
        assert segment.status_code == 429, segment.text
        assert "'shop' is over its limit" in segment.json()["error"]

        def applied() -> bool:
            got = http.get("/v1/profiles/C-1", headers=bearer("read-secret"))
            return got.status_code == 200 and got.json().get("traits") == {"plan": "gold"}

        wait_until(applied, 60, "the posted events (the identify too) to be applied")
        assert http.get("/v1/profiles/C-1", headers=bearer("ingest-secret")).status_code == 403
        # Every read needs 'read'; the guard answers before the view, so 404s mean passed.
        for path, answer in [
            ("/v1/profiles/C-1/triggers", 200),
            ("/v1/rules", 200),
            ("/v1/rules/nope/uplift", 404),
            ("/v1/segments", 200),
            ("/v1/segments/nope/members", 404),
            ("/v1/experiments/nope", 404),
        ]:
            assert http.get(path, headers=bearer("ingest-secret")).status_code == 403, path
            assert http.get(path, headers=bearer("read-secret")).status_code == answer, path
        # Assignment exposes the customer: a POST with 'assign' (no experiment here: 404).
        assignment = "/v1/experiments/nope/assignment/C-1"
        assert http.post(assignment, headers=bearer("read-secret")).status_code == 403
        assert http.post(assignment, headers=bearer("assign-secret")).status_code == 404
        assert http.get(assignment, headers=bearer("assign-secret")).status_code == 405
        assert http.get("/v1/profiles/C-1/export", headers=bearer("read-secret")).status_code == 403
        assert http.delete("/v1/profiles/C-1", headers=bearer("read-secret")).status_code == 403
        assert (
            http.get("/v1/profiles/C-1/export", headers=bearer("admin-secret")).status_code == 200
        )
        assert http.delete("/v1/profiles/C-1", headers=bearer("admin-secret")).status_code == 202
        wait_until(lambda: audited(env, 1), 60, "the erasure to be carried out")
        assert http.get("/v1/profiles/C-1", headers=bearer("read-secret")).status_code == 404
    audit = [json.loads(r.value) for r in consume_all(env.settings, env.settings.topic_audit, 1)]
    assert [a["requested_by"] for a in audit] == ["dpo"]  # the token's name, not its secret
    # Every role's /metrics is behind a token (the worker's too), and no log holds one.
    refused = httpx.get(f"{roles.worker.url}/metrics", timeout=10)
    assert refused.status_code == 401
    for log in ("worker-0.log", "api-0.log"):
        assert "admin-secret" not in (env.logs / log).read_text(), log


def test_no_personal_data_in_logs_metrics_or_dead_letters(env: Env) -> None:
    events = list(Shop(customers=40, days=10, seed=3).events())
    customers = {e["customer_id"] for e in events if e.get("customer_id")}
    emails = {f"{c}@example.com" for c in customers}
    broken = [
        # rejected identify events still carry the email and phone
        {
            **e,
            "timestamp": "yesterday",
            "properties": {
                "traits": {"email": f"{e['customer_id']}@example.com", "phone": "+49 30 1234567"}
            },
        }
        for e in events
        if e["type"] == "identify"
    ][:20]
    assert broken
    worker = env.worker(CDPULSE_TEST_LOGLEVEL="info")
    learner = env.learner(CDPULSE_TEST_LOGLEVEL="info")
    topic = env.settings.topic_customers
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
        for event in broken:
            producer.send_raw(topic, json.dumps(event).encode(), event["customer_id"].encode())
        # Email, phone, name and address in wrong-typed fields of traits and properties.
        for doc, _, _ in HOSTILE:
            producer.send_raw(topic, json.dumps(doc).encode(), b"hostile")
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")

    letters = consume_all(env.settings, env.settings.topic_dead_letter, len(broken) + len(HOSTILE))
    assert len(letters) == len(broken) + len(HOSTILE)
    bodies = [json.loads(letter.value) for letter in letters]
    hostile = [body for body in bodies if body["key"] == "hostile"]
    assert [body["reason"] for body in hostile] == [reason for _, reason, _ in HOSTILE]
    for body in bodies:
        # The detail names paths and error types, never a value the event held.
        assert not [v for v in (*PLANTED, *emails, "+49 30") if v in body["detail"]], body
        # The raw copy: email addresses and international phone numbers redacted.
        assert not any(e in body["raw"] for e in (*emails, EMAIL, PHONE)), body["raw"]
        if body["key"] != "hostile":
            assert body["reason"] and "[redacted]" in body["raw"]
            assert "1234567" not in body["raw"]
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_reco_events),
        120,
        "the learner to learn every item event",
    )
    texts: list[tuple[str, str]] = []
    for process in (worker, learner):
        texts.append(
            (httpx.get(f"{process.url}/metrics", timeout=10).text, f"{process.role} /metrics")
        )
        process.stop()
        log = process.log.read_text(encoding="utf-8", errors="replace")
        assert len(log) > 0
        texts.append((log, f"the {process.role} log"))
    for text, where in texts:
        leaked = [s for s in customers | emails if s in text]
        assert not leaked, f"{where} names {leaked[:3]}"


def _identifies(env: Env) -> list[Any]:
    records = consume_all(env.settings, env.settings.topic_customers, 1, timeout=10)
    return [r for r in records if json.loads(r.value)["type"] == "identify"]


def test_personal_traits_travel_sealed_and_erasing_the_data_key_shreds_every_copy(
    env: Env,
) -> None:
    roles = env.roles()
    worker = roles.worker
    email = "Carol.Jones@Example.com"
    identify = {
        "event_id": "id-1",
        "type": "identify",
        "timestamp": 1_767_225_600_000,
        "customer_id": "C-9",
        "anonymous_id": "A-9",
        "channel": "web",
        "properties": {"traits": {"email": email, "country": "NL", "favourite_colour": "red"}},
    }
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        assert http.post("/v1/events", json=identify).status_code == 200
        wait_until(
            lambda: http.get("/v1/profiles/C-9").status_code == 200, 60, "the identify to apply"
        )
        profile = http.get("/v1/profiles/C-9").json()
        assert profile["traits"] == {"country": "NL", "email": pseudonym("email", email)}
        assert worker.metric("cdpulse_traits_dropped_total") == 1  # favourite_colour

        # What Kafka holds: the pseudonym, and the email sealed with C-9's data key.
        [record] = _identifies(env)
        assert email.encode() not in record.value and email.lower().encode() not in record.value
        traits = json.loads(record.value)["properties"]["traits"]
        key = env.redis.get(keys_for(env.redis, env.name).data_key("C-9"))
        assert isinstance(key, bytes) and len(key) == 32
        assert unseal(key, "C-9", traits["email_sealed"]) == email
        assert unseal(key, "C-8", traits["email_sealed"]) is None  # bound to its customer

        # Found by email, though only its pseudonym is stored (any spelling of it).
        lookup = {"trait": "email", "value": " carol.jones@EXAMPLE.com"}
        found = http.post("/v1/identities/lookup", json=lookup)
        assert found.status_code == 200 and found.json()["profile_id"] == "C-9"
        other = {"trait": "email", "value": "nobody@example.com"}
        assert http.post("/v1/identities/lookup", json=other).status_code == 404
        wrong = http.post("/v1/identities/lookup", json={"trait": "country", "value": "NL"})
        assert wrong.status_code == 400 and "not a personal trait" in wrong.json()["error"]

        assert http.delete("/v1/profiles/A-9").status_code == 202
        wait_until(lambda: audited(env, 1), 60, "the erasure to be carried out")
        assert http.get("/v1/profiles/C-9").status_code == 404
        assert http.post("/v1/identities/lookup", json=lookup).status_code == 404
    # The key is gone: the copy in Kafka's history can no longer be opened by anyone.
    assert env.redis.get(keys_for(env.redis, env.name).data_key("C-9")) is None
    [record] = _identifies(env)
    assert "email_sealed" in json.loads(record.value)["properties"]["traits"]


def on_every_node(client: BlockingRedis, *command: Any) -> Any:
    """``command`` on one Redis, or on every node of a Redis Cluster (which does not
    share users); a cluster's replies, as one list."""
    if not isinstance(client, redis.RedisCluster):
        return client.execute_command(*command)
    replies = client.execute_command(*command, target_nodes=redis.RedisCluster.ALL_NODES)
    if isinstance(replies, dict):
        return [entry for reply in replies.values() if isinstance(reply, list) for entry in reply]
    return replies


def _acl_denials(admin: BlockingRedis, user: str) -> list[Any]:
    """What Redis refused ``user`` (ACL LOG), including refusals a client swallowed; on
    a Redis Cluster every node's."""
    entries = on_every_node(admin, "ACL", "LOG", "128")
    return [e for e in entries if user.encode() in (e.get(b"username"), e.get("username"))]


def test_every_role_and_tool_runs_under_the_allow_list_acl(env: Env) -> None:
    user, password = f"cdpulse-{env.name}", f"pw-{env.name}"
    rebuilt = f"{env.name}-rebuilt"
    admin = env.redis
    on_every_node(admin, *setuser_command(env.settings, user, f">{password}", also=[rebuilt]))
    login = {"CDPULSE_REDIS_USERNAME": user, "CDPULSE_REDIS_PASSWORD": password}
    try:
        # Every role runs as the user: the learner too (its refits and the RFM sweep).
        roles = env.roles(learner=True, **login)
        events = list(Shop(customers=20, days=5, seed=4).events())
        customer = next(e["customer_id"] for e in events if e.get("customer_id"))
        with Producer.from_settings(env.settings) as producer:
            for event in events:
                producer.send(event)
        wait_until(lambda: drained(env.settings), 300, "the worker to drain as the ACL user")
        topic = env.settings.topic_reco_events
        wait_until(lambda: caught_up(env.settings, topic), 120, "the learner to catch up")
        assert admin.scard(f"{env.name}:model:reco:shards") > 0  # its snapshots published
        with httpx.Client(base_url=roles.api.url, timeout=10) as http:
            assert http.get(f"/v1/profiles/{customer}").status_code == 200
            assert http.get(f"/v1/profiles/{customer}/export").status_code == 200
            assert http.delete(f"/v1/profiles/{customer}").status_code == 202
            wait_until(
                lambda: audited(env, 1),
                60,
                "an erasure to run as the ACL user",
            )
            assert http.get(f"/v1/profiles/{customer}").status_code == 404
        for process in (roles.worker, roles.api, roles.learning):
            assert process.metric("cdpulse_redis_errors_total") == 0, process.tail()

        # The tools too: a profile read, and a rebuild into a prefix of its own.
        other = next(
            e["customer_id"] for e in events if e.get("customer_id") not in (None, customer)
        )
        shown = _cdpulse_as(env, login, "profile", other)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["customer_id"] == other
        done = _cdpulse_as(env, login, "rebuild", "--target-prefix", rebuilt)
        assert done.returncode == 0, done.stderr
        assert admin.exists(keys_for(admin, rebuilt).profile(other)) == 1
        # Nothing was refused, not even what a client swallows (the roles retry errors).
        assert _acl_denials(admin, user) == []
        wrong = _cdpulse_as(env, {**login, "CDPULSE_REDIS_PASSWORD": "wrong"}, "profile", other)
        assert wrong.returncode != 0  # the tools log in as the user, not as the default user
    finally:
        on_every_node(admin, "ACL", "DELUSER", user)
        admin.delete(*admin.keys(f"{rebuilt}:*") or [f"{rebuilt}:none"])


def _cdpulse_as(env: Env, login: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdpulse", *args],
        env={**os.environ, **env.variables, **login},
        capture_output=True,
        text=True,
        timeout=300,
    )


# Commands no cdpulse process sends. The last ones are harmless: refused only because the
# list allows (it does not deny). Each is safe should the ACL wrongly allow it: SHUTDOWN
# ABORT stops nothing, REPLICAOF NO ONE is what a primary is, SWAPDB 0 0 swaps nothing.
REFUSED: list[tuple[str, ...]] = [
    ("ACL", "SETUSER", "{user}", "+@all"),
    ("ACL", "LIST"),  # every user's password hashes
    ("MONITOR",),
    ("DEBUG", "SLEEP", "0"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("KEYS", "{prefix}:*"),
    ("SHUTDOWN", "ABORT"),
    ("SCRIPT", "FLUSH"),
    ("MODULE", "LOAD", "/nonexistent/module.so"),
    ("REPLICAOF", "NO", "ONE"),
    ("EVAL", "return 1", "0"),
    ("CLIENT", "LIST"),
    ("OBJECT", "ENCODING", "{prefix}:probe"),
    ("SWAPDB", "0", "0"),
]
# Redis refuses these before it checks the ACL (enable-debug-command and
# enable-module-command are off): whether the ACL would allow them is asked with DRYRUN.
REFUSED_BEFORE_THE_ACL = {"DEBUG", "MODULE"}


def test_the_acl_refuses_what_cdpulse_never_sends_and_keys_outside_its_prefix(
    env: Env,
) -> None:
    user, password = f"cdpulse-{env.name}", f"pw-{env.name}"
    admin = env.redis
    on_every_node(admin, *setuser_command(env.settings, user, f">{password}"))
    admin.set("someone-else:secret", b"not yours")
    confined = blocking_redis(env.settings.redis_url, username=user, password=password)
    try:
        # Logged in, and what cdpulse does is allowed: the refusals below are the ACL's.
        assert confined.set(f"{env.name}:probe", b"1") is True
        assert confined.evalsha(confined.script_load(_GET), 0, f"{env.name}:probe") == b"1"
        for template in REFUSED:
            command = [a.format(user=user, prefix=env.name) for a in template]
            verdict = admin.execute_command("ACL", "DRYRUN", user, *command)
            assert verdict != b"OK" and b"no permissions" in verdict, command
            if command[0] not in REFUSED_BEFORE_THE_ACL:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    confined.execute_command(*command)
        assert admin.execute_command("ACL", "GETUSER", user)[b"commands"].startswith(b"-@all")

        # Keys outside the prefix, also where a name only starts like it.
        for key in ("someone-else:secret", f"{env.name}-other:key", f"{env.name}"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                confined.get(key)
            with pytest.raises(redis.exceptions.NoPermissionError):
                confined.set(key, b"mine")
        assert admin.get("someone-else:secret") == b"not yours"

        # A script runs as its caller: no way around the list or the key patterns.
        flush = confined.script_load("return redis.call('FLUSHALL')")
        with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):
            confined.evalsha(flush, 0)
        with pytest.raises(redis.exceptions.ResponseError, match="can't access"):
            confined.evalsha(confined.script_load(_GET), 0, "someone-else:secret")
        assert admin.exists("someone-else:secret") == 1
    finally:
        confined.close()
        on_every_node(admin, "ACL", "DELUSER", user)
        admin.delete("someone-else:secret")


# The key as an argument, as cdpulse's scripts name theirs: checked inside the script.
_GET = "return redis.call('GET', ARGV[1])"


def test_inactive_profiles_and_identity_links_expire(env: Env) -> None:
    seconds = 6
    roles = env.roles(CDPULSE_PROFILE_RETENTION_DAYS=str(seconds / 86_400))
    identify = {
        "event_id": "r-1",
        "type": "identify",
        "timestamp": 1_767_225_600_000,
        "customer_id": "C-5",
        "anonymous_id": "A-5",
        "channel": "web",
        "properties": {"traits": {"email": "dan@example.com"}},
    }
    keys = keys_for(env.redis, env.name)
    profile, alias = keys.profile("C-5"), keys.alias("A-5")
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        assert http.post("/v1/events", json=identify).status_code == 200
    wait_until(lambda: env.redis.exists(profile) == 1, 60, "the profile to be written")
    for key in (profile, alias, keys.data_key("C-5")):
        assert 0 < env.redis.pttl(key) <= seconds * 1000, key
    wait_until(
        lambda: env.redis.exists(profile) + env.redis.exists(alias) == 0, 30, "them to expire"
    )
