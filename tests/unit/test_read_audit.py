"""The audit of reads, in process: which routes are audited, what a record holds (and
never holds), the queue that keeps reads from waiting on Kafka, and the query of
``cdpulse audit``. ``tests/integration/test_read_audit.py`` runs it on a real Kafka."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

import cdpulse.app.api as api_module
import cdpulse.app.audit as audit_module
from cdpulse.app.audit import (
    AUDITED,
    AUDITED_ELSEWHERE,
    Answered,
    ReadTrail,
    Subjects,
    answering,
    record_of,
    subject_ids,
)
from cdpulse.app.auth import ALL_SCOPES, Verdict
from cdpulse.cli.audit_cmd import moment
from cdpulse.cli.main import CliError
from cdpulse.ops import metrics
from cdpulse.pipeline.outputs import Outputs, Stream
from cdpulse.privacy.pseudonyms import Pseudonymizer, RememberedPseudonyms
from cdpulse.privacy.read_audit import AuditQuery, ReadAuditError, ReadRecord, subject_of
from cdpulse.settings import ApiToken, Settings
from tests.unit.test_routes import _web_app, routes

KEY = b"k" * 32
P = Pseudonymizer(KEY)
NAMES_A_CUSTOMER = re.compile(r"\{(profile_id|customer_id)\}")


def test_every_route_that_names_a_customer_is_audited() -> None:
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        auth_disabled=True,
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
    )
    table = {(m, r) for m, r in routes(_web_app(settings)) if m not in ("HEAD", "OPTIONS")}
    naming = {(m, r) for m, r in table if NAMES_A_CUSTOMER.search(r)}
    unaudited = naming - AUDITED.keys() - AUDITED_ELSEWHERE.keys()
    assert not unaudited, (
        f"routes naming a customer without an audit: {sorted(unaudited)}; add each to "
        "app/audit.py AUDITED (or AUDITED_ELSEWHERE, saying which record audits it)"
    )
    # and the table names real routes only, none twice
    assert AUDITED.keys() <= table and AUDITED_ELSEWHERE.keys() <= table
    assert not AUDITED.keys() & AUDITED_ELSEWHERE.keys()
    # the listings and lookups that name customers only in their answer are audited too
    assert ("POST", "/v1/identities/lookup") in AUDITED
    assert ("GET", "/v1/segments/{name}/members") in AUDITED


def _answered(
    route: str = "/v1/profiles/{profile_id}",
    params: dict[str, str] | None = None,
    body: Any = None,
    status: int = 200,
    token: str = "crm",
    number: int = 1,
) -> Answered:
    method = "POST" if route == "/v1/identities/lookup" else "GET"
    return Answered(
        f"o-{number}",
        1_700_000_000_000 + number,
        token,
        method,
        route,
        status,
        params if params is not None else {"profile_id": "anon-7"},
        None if body is None else json.dumps(body).encode(),
        AUDITED[(method, route)],
    )


def test_a_profile_read_names_the_id_asked_and_the_customer_answered_as_pseudonyms() -> None:
    body = {
        "id": "cust-ada",
        "customer_id": "cust-ada",
        "traits": {"email": "ada@example.com", "country": "DE"},
        "anonymous_ids": ["anon-7"],
    }
    record = record_of(_answered(body=body), P, {"crm": "customer-support"})
    assert record.subjects == [P.of_id("anon-7"), P.of_id("cust-ada")]
    assert (record.token, record.purpose, record.status) == ("crm", "customer-support", 200)
    assert record.route == "/v1/profiles/{profile_id}" and record.params == {}
    raw = record.to_json()
    for personal in (b"anon-7", b"cust-ada", b"ada@example.com", b"DE"):
        assert personal not in raw


def test_listings_and_lookups_name_their_customers_from_the_answer() -> None:
    members = _answered(
        "/v1/segments/{name}/members",
        {"name": "vip"},
        {"segment": "vip", "members": ["c-1", "c-2", "c-1"], "next": "c-2"},
    )
    record = record_of(members, P, {})
    assert record.subjects == [P.of_id("c-1"), P.of_id("c-2")]
    assert record.params == {"name": "vip"}  # a configured segment: it answered 200
    assert record.purpose == "unspecified"
    lookup = _answered("/v1/identities/lookup", {}, {"profile_id": "c-9", "pseudonym": "hmac:x"})
    assert record_of(lookup, P, {}).subjects == [P.of_id("c-9")]


def test_a_failed_read_keeps_no_parameter_the_caller_typed() -> None:
    # a 404 on a segment the caller named: the name may be anything, an email even
    typed = _answered("/v1/segments/{name}/members", {"name": "bob@example.com"}, status=404)
    record = record_of(typed, P, {})
    assert record.params == {} and record.subjects == []
    assert b"bob@example.com" not in record.to_json()
    # a 404 on a profile still names whom it asked for, pseudonymised
    missing = record_of(_answered(params={"profile_id": "who-1"}, status=404), P, {})
    assert missing.subjects == [P.of_id("who-1")]


def test_an_answer_that_is_not_the_json_expected_names_no_one_from_it() -> None:
    broken = _answered()._replace(body=b"\xff not json")
    assert subject_ids(broken) == ["anon-7"]
    odd = _answered(body={"id": 7, "customer_id": ["x"]})
    assert subject_ids(odd) == ["anon-7"]


# What a record holds besides pseudonyms: an id must not hide in it by accident.
# What every record holds whatever the read: its field names and fixed values. An id
# drawn inside one of them ("sta" in "status") would be found without being leaked.
FIXED = [
    "o-1",
    "crm",
    "unspecified",
    "GET",
    "POST",
    "vip",
    *(r for _, r in AUDITED),
    *ReadRecord.__struct_fields__,
    "profile_id",
    "name",
]
ids = st.text(min_size=3, max_size=40).filter(
    lambda s: not set(s) <= set("0123456789abcdef") and not any(s in f for f in FIXED)
)


def _strings(value: Any) -> list[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@given(path_id=ids, customer=ids, members=st.lists(ids, max_size=5), name=ids)
def test_no_record_holds_an_id_it_names(
    path_id: str, customer: str, members: list[str], name: str
) -> None:
    answered = [
        _answered(params={"profile_id": path_id}, body={"id": path_id, "customer_id": customer}),
        _answered("/v1/segments/{name}/members", {"name": name}, {"members": members}, status=404),
        _answered("/v1/segments/{name}/members", {"name": "vip"}, {"members": members}),
        _answered("/v1/identities/lookup", {}, {"profile_id": customer}),
    ]
    for a in answered:
        record = record_of(a, P, {})
        held = _strings(json.loads(record.to_json()))
        for personal in {path_id, customer, *members, name}:
            assert not any(personal in text for text in held), (personal, held)
        assert set(record.subjects) <= {P.of_id(i) for i in (path_id, customer, *members)}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Kafka:
    """A send that fails while ``down``; what it took, in order."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[ReadRecord] = []

    async def send(self, records: list[ReadRecord]) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.sent.extend(records)


def _trail(kafka: _Kafka, clock: _Clock, capacity: int = 3) -> ReadTrail:
    return ReadTrail(kafka.send, P, {}, capacity, stall_seconds=30, batch=2, clock=clock)


def test_while_kafka_is_down_reads_queue_then_drop_counted_and_readiness_says_so() -> None:
    kafka, clock = _Kafka(), _Clock()
    trail = _trail(kafka, clock)
    kafka.down = True
    dropped_before = metrics.READ_AUDIT_DROPPED._value.get()
    for n in range(5):
        trail.note(_answered(number=n))
    assert (trail.queued, trail.dropped) == (3, 2)
    assert metrics.READ_AUDIT_DROPPED._value.get() - dropped_before == 2
    assert asyncio.run(trail.flush()) == 0 and trail.queued == 3
    shown, why = trail.readiness()
    assert shown == {"queued": 3, "sent": 0, "dropped": 2}
    assert "being dropped (2 so far" in why and "CDPULSE_TOPIC_READ_AUDIT" in why
    # Kafka back: the queued records go, oldest first, with the ids they were given
    kafka.down = False
    assert asyncio.run(trail.flush()) == 3
    assert [r.id for r in kafka.sent] == ["o-0", "o-1", "o-2"]
    assert trail.readiness()[1] != ""  # drops are recent: still not ready
    clock.now += 31
    assert trail.readiness() == ({"queued": 0, "sent": 3, "dropped": 2}, "")


def test_sends_failing_longer_than_the_stall_make_the_api_unready_before_any_drop() -> None:
    kafka, clock = _Kafka(), _Clock()
    trail = _trail(kafka, clock, capacity=100)
    kafka.down = True
    trail.note(_answered())
    asyncio.run(trail.flush())
    assert trail.readiness()[1] == ""  # failing, but not for long yet
    clock.now += 30
    asyncio.run(trail.flush())
    why = trail.readiness()[1]
    assert "not sent for 30s (last: ConnectionError; 1 queued of 100)" in why
    kafka.down = False
    asyncio.run(trail.flush())
    assert trail.readiness()[1] == "" and [r.id for r in kafka.sent] == ["o-1"]


def test_reads_answered_during_a_send_stay_queued_behind_it() -> None:
    kafka, clock = _Kafka(), _Clock()
    trail = _trail(kafka, clock, capacity=10)
    late: list[int] = []

    async def slow_send(records: list[ReadRecord]) -> None:
        await asyncio.sleep(0)
        if not late:  # a read answered while the first batch is in flight
            late.append(1)
            trail.note(_answered(number=99))
        kafka.sent.extend(records)

    trail._send = slow_send
    for n in range(3):
        trail.note(_answered(number=n))
    assert asyncio.run(trail.flush()) == 4  # batches of 2: [0, 1], [2, 99]
    assert [r.id for r in kafka.sent] == ["o-0", "o-1", "o-2", "o-99"]


def test_the_api_audits_through_its_guard_with_the_token_and_its_purpose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real api's routes, in process: the guard hands each answer to the trail, which
    the api's send publishes as records keyed by subject. No Kafka or Redis is reached:
    the calls are answered before either is needed."""
    published: list[Outputs] = []

    class Outlet:
        def __init__(self, app: Any, topics: dict[Stream, str]) -> None:
            self.topics = topics

        async def publish(self, outputs: Outputs) -> None:
            published.append(outputs)

    trails: list[ReadTrail] = []

    def register(*args: Any, **kwargs: Any) -> ReadTrail:
        trails.append(audit_module.register_read_audit(*args, **kwargs))
        return trails[-1]

    monkeypatch.setattr(audit_module, "KafkaOutlet", Outlet)
    monkeypatch.setattr(api_module, "register_read_audit", register)
    tokens = {
        "crm": ApiToken(secret=SecretStr("crm-s"), scopes=sorted(ALL_SCOPES), purpose="crm-sync"),
        "plain": ApiToken(secret=SecretStr("plain-s"), scopes=["read"]),
    }
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens=tokens,
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
    )
    application = _web_app(settings)
    crm = {"Authorization": "Bearer crm-s"}

    async def calls() -> list[int]:
        async with TestClient(TestServer(application)) as client:
            answers = [
                await client.post("/v1/identities/lookup", data=b"{", headers=crm),
                await client.get("/v1/segments/bob@example.com/members", headers=crm),
                await client.post("/v1/experiments/x/assignment/cust-42", headers=crm),
                await client.get("/v1/rules", headers=crm),  # no customer: not audited
                await client.get("/v1/segments/x/members", headers={}),  # refused: no read
                await client.get(
                    "/v1/segments/y/members", headers={"Authorization": "Bearer plain-s"}
                ),
            ]
            await trails[0].flush()
            return [a.status for a in answers]

    assert asyncio.run(calls()) == [400, 404, 404, 200, 401, 404]
    (outputs,) = published
    records = [ReadRecord.from_json(r.value) for r in outputs.records[Stream.AUDIT]]
    assert [(r.token, r.purpose, r.method, r.route, r.status) for r in records] == [
        ("crm", "crm-sync", "POST", "/v1/identities/lookup", 400),
        ("crm", "crm-sync", "GET", "/v1/segments/{name}/members", 404),
        ("crm", "crm-sync", "POST", "/v1/experiments/{name}/assignment/{customer_id}", 404),
        ("plain", "unspecified", "GET", "/v1/segments/{name}/members", 404),
    ]
    pseudonyms = Pseudonymizer(b"k")
    assert records[2].subjects == [pseudonyms.of_id("cust-42")]
    keys = [r.key for r in outputs.records[Stream.AUDIT]]
    assert keys == [b"crm", b"crm", pseudonyms.of_id("cust-42").encode(), b"plain"]
    assert all(r.params == {} for r in records)  # none answered 2xx
    assert len({r.id for r in records}) == 4
    for record in outputs.records[Stream.AUDIT]:
        assert b"cust-42" not in (record.value or b"")
        assert b"bob@example.com" not in (record.value or b"")


def test_a_token_purpose_is_a_slug_never_free_text() -> None:
    assert ApiToken(secret=SecretStr("s"), scopes=[], purpose="crm-sync.v2").purpose
    for text in ("Call Bob at 555-1234", "a" * 65, "-lead", "Support"):
        with pytest.raises(ValueError):
            ApiToken(secret=SecretStr("s"), scopes=[], purpose=text)


def test_the_query_filters_by_token_subject_route_purpose_and_time() -> None:
    def rec(n: int, token: str, route: str, subjects: list[str], purpose: str = "p") -> ReadRecord:
        return ReadRecord(f"r{n}", 1000 * n, token, purpose, "GET", route, 200, subjects)

    records = [
        rec(1, "crm", "/v1/profiles/{profile_id}", ["hmac:a"]),
        rec(2, "crm", "/v1/segments/{name}/members", ["hmac:a", "hmac:b"], "q"),
        rec(3, "bi", "/v1/profiles/{profile_id}/export", ["hmac:b"]),
        rec(4, "bi", "/v1/identities/lookup", []),
    ]

    def ids(query: AuditQuery) -> list[str]:
        return [r.id for r in records if query.matches(r)]

    assert ids(AuditQuery()) == ["r1", "r2", "r3", "r4"]
    assert ids(AuditQuery(tokens=frozenset({"bi"}))) == ["r3", "r4"]
    assert ids(AuditQuery(subjects=frozenset({"hmac:b"}))) == ["r2", "r3"]
    assert ids(AuditQuery(routes=("/v1/profiles/*",))) == ["r1", "r3"]
    assert ids(AuditQuery(routes=("/v1/profiles/{profile_id}",))) == ["r1"]
    assert ids(AuditQuery(purposes=frozenset({"q"}))) == ["r2"]
    assert ids(AuditQuery(since_ms=2000, until_ms=4000)) == ["r2", "r3"]  # [since, until)
    both = AuditQuery(tokens=frozenset({"crm"}), subjects=frozenset({"hmac:b"}))
    assert ids(both) == ["r2"]


def test_records_that_do_not_read_are_refused_by_name() -> None:
    for raw in (None, b"", b"{}", b'{"audit": "erasure"}', b"[1]"):
        with pytest.raises(ReadAuditError):
            ReadRecord.from_json(raw)


def test_a_subject_is_asked_for_by_id_or_by_pseudonym() -> None:
    assert subject_of("cust-1", P) == P.of_id("cust-1")
    assert subject_of(P.of_id("cust-1"), P) == P.of_id("cust-1")
    assert subject_of("hmac:short", P) == P.of_id("hmac:short")  # not a pseudonym's shape


def test_times_are_rfc_3339_with_a_zone_or_a_span_back_from_now() -> None:
    assert moment("2026-12-01T01:00:00+01:00", "--since", 0) == 1_796_083_200_000
    assert moment("7d", "--since", 700_000.0) == (700_000 - 7 * 86400) * 1000
    assert moment(None, "--until", 0) is None
    for bad in ("2026-12-01T00:00:00", "yesterday", "5w", "-3h"):
        with pytest.raises(CliError, match="--until"):
            moment(bad, "--until", 0)


def test_subjects_spec_defaults_name_no_one() -> None:
    assert subject_ids(_answered()._replace(subjects=Subjects(), body=b"{}")) == []


async def _observed(trail: ReadTrail, route: str, path: str, response: Any) -> None:
    """``trail`` observing ``response`` to a GET of ``path`` matched by ``route``."""
    router = web.UrlDispatcher()

    async def answer(request: web.Request) -> web.StreamResponse:
        return response

    router.add_get(route, answer)
    request = make_mocked_request("GET", path)
    request._match_info = await router.resolve(request)
    trail.observe(request, Verdict("crm"), response)


def test_an_answer_handed_by_its_handler_names_whom_its_body_names() -> None:
    """``answering``: the trail reads the subjects from the object the handler answered,
    and the record is the one its body, parsed back, would give."""
    kafka = _Kafka()
    trail = ReadTrail(kafka.send, P, {}, 100, stall_seconds=30)
    profile = {"id": "cust-ada", "customer_id": "cust-ada", "traits": {"email": "a@b.c"}}
    recommendations = {"customer_id": "cust-ada", "items": [], "quality": {"status": "ok"}}
    members = {"segment": "vip", "members": ["c-1", "c-2"]}
    cases = [
        ("/v1/profiles/{profile_id}", "/v1/profiles/anon-7", profile),
        (
            "/v1/profiles/{profile_id}/recommendations",
            "/v1/profiles/anon-7/recommendations",
            recommendations,
        ),
        ("/v1/segments/{name}/members", "/v1/segments/vip/members", members),
    ]

    async def observe() -> None:
        for route, path, answer in cases:
            await _observed(trail, route, path, web.json_response(answer))
            await _observed(trail, route, path, answering(web.json_response(answer), answer))
            missing = answering(web.json_response({"error": "no"}, status=404), answer)
            await _observed(trail, route, path, missing)  # failed: the path only

    asyncio.run(observe())
    kept = list(trail._queue)
    assert [a.body is answer for a, (_, _, answer) in zip(kept[1::3], cases, strict=True)] == [
        True,
        True,
        True,
    ]
    assert asyncio.run(trail.flush()) == 9
    subjects = [r.subjects for r in kafka.sent]
    assert (
        subjects[0::3]
        == subjects[1::3]
        == [
            [P.of_id("anon-7"), P.of_id("cust-ada")],
            [P.of_id("anon-7"), P.of_id("cust-ada")],
            [P.of_id("c-1"), P.of_id("c-2")],
        ]
    )
    assert subjects[2::3] == [[P.of_id("anon-7")], [P.of_id("anon-7")], []]
    assert [r.params for r in kafka.sent[6:]] == [{"name": "vip"}, {"name": "vip"}, {}]


def test_remembered_pseudonyms_are_the_pseudonyms() -> None:
    remembered = RememberedPseudonyms(P, 2)
    for i in ["a", "b", "a", "c", "a", "b"]:
        assert remembered.of_id(i) == P.of_id(i)
    record = record_of(_answered(body={"id": "cust-1"}), remembered, {})
    assert record == record_of(_answered(body={"id": "cust-1"}), P, {})
