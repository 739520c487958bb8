"""Custom events, the pure parts: the contract's rules, the schema registry, the profile's
counts and their cap, the segment fields, and the pipeline's decode stage holding events
to their schemas. Counts are compared with the oracle (``tests/oracle.py``), which
computes them apart from the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract import validation
from cdpulse.contract.custom_schemas import CustomSchemaError, CustomSchemas
from cdpulse.contract.events import WINDOW_SUFFIXES
from cdpulse.contract.message import Message
from cdpulse.contract.mirror import CustomEvent, Event
from cdpulse.models.next_purchase import next_purchase_view
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.decode import decode_batch
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile import limits
from cdpulse.profile.model import Profile, decode
from cdpulse.profile.rules import Rules, apply, merge, new_profile
from cdpulse.profile.view import render
from cdpulse.profile.windows import WINDOWS
from cdpulse.segments.definitions import parse
from cdpulse.segments.expressions import Condition
from cdpulse.segments.fields import document_fields, profile_fields
from cdpulse.settings import Settings
from tests import oracle

NOW = datetime(2026, 11, 26, tzinfo=UTC)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE, HOUR, DAY = oracle.MINUTE, oracle.HOUR, oracle.DAY
CUSTOMER = "C-1"
WISHLIST = {
    "type": "object",
    "required": ["product_id"],
    "properties": {
        "product_id": {"type": "string", "minLength": 1},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
SCHEMAS = CustomSchemas({"wishlist_added": WISHLIST})
TRAITS = TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY))

_ids = count()


def custom(name: str, t: int, *, customer: str = CUSTOMER, **properties: Any) -> dict[str, Any]:
    """A valid custom event ``name`` at ``t`` (epoch ms) by ``customer``."""
    return {
        "event_id": f"c{next(_ids)}",
        "type": "custom",
        "name": name,
        "timestamp": t,
        "customer_id": customer,
        "channel": "web",
        "properties": properties,
    }


def wish(t: int, product: str = "P-1", **more: Any) -> dict[str, Any]:
    return custom("wishlist_added", t, product_id=product, **more)


def parsed(event: dict[str, Any], schemas: CustomSchemas | None = None) -> Event:
    result = validation.validate(event, now=NOW, schemas=schemas)
    assert not isinstance(result, validation.Rejection), result
    return result


def applied(events: list[dict[str, Any]], rules: Rules) -> Profile:
    profile = new_profile(CUSTOMER)
    for event in events:
        apply(profile, parsed(event), rules)
    return profile


def newest(events: list[dict[str, Any]]) -> int:
    return max(oracle.millis(e["timestamp"]) for e in events)


def truth(events: list[dict[str, Any]], rules: Rules, as_of: int | None = None) -> dict[str, Any]:
    as_of = newest(events) if as_of is None else as_of
    return oracle.profile(
        CUSTOMER,
        events,
        as_of,
        registered=rules.custom_schemas.names,
        custom_kept=rules.custom_names_kept,
    )


def rendered(events: list[dict[str, Any]], rules: Rules, as_of: int | None = None) -> Any:
    """The engine's render, checked against the oracle field by field first."""
    as_of = newest(events) if as_of is None else as_of
    got = render(applied(events, rules), as_of, rules)
    assert oracle.differences(got, truth(events, rules, as_of)) == []
    return got


# --- the contract ---------------------------------------------------------------------------


def test_the_window_suffixes_a_name_may_not_end_in_are_the_profiles_windows() -> None:
    assert tuple(f"_{w.name}" for w in WINDOWS) == WINDOW_SUFFIXES


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Wishlist Added", "pattern"),
        ("2fa_enabled", "pattern"),
        ("x" * 65, "at most 64"),
        ("page_viewed", "built-in event type"),
        ("trial_7d", "_7d"),
        ("", "at least 1"),
    ],
)
def test_a_malformed_name_is_rejected_naming_the_field(name: str, says: str) -> None:
    rejection = validation.validate(custom(name, T0), now=NOW)
    assert isinstance(rejection, validation.Rejection)
    assert rejection.reason == validation.INVALID_FIELD
    assert "'name'" in rejection.detail and says in rejection.detail, rejection.detail


# --- the registry ---------------------------------------------------------------------------


def test_a_registered_event_violating_its_schema_is_rejected_with_the_paths() -> None:
    event = wish(T0, product="", price=-1, tags=["a", 7], note="secret@example.com")
    event["properties"]["a@b.example"] = "x"
    rejection = validation.validate(event, now=NOW, schemas=SCHEMAS)
    assert isinstance(rejection, validation.Rejection)
    assert rejection.reason == validation.SCHEMA_VIOLATION == "schema_violation"
    assert rejection.reason in validation.REASONS
    assert rejection.event_id == event["event_id"]
    detail = rejection.detail
    for part in (
        "'properties.product_id': does not satisfy 'minLength' 1 [minLength]",
        "'properties.price': does not satisfy 'minimum' 0 [minimum]",
        "'properties.tags.1': does not satisfy 'type' \"string\" [type]",
    ):
        assert part in detail, detail
    assert "secret" not in detail and "-1" not in detail and "7" not in detail.split(":", 1)[1]
    missing = validation.validate(custom("wishlist_added", T0, price=2), now=NOW, schemas=SCHEMAS)
    assert isinstance(missing, validation.Rejection)
    assert missing.detail.endswith("'properties.product_id': is required [required]")
    # The same events without a registry, and names without a schema, are free-form.
    assert not isinstance(validation.validate(event, now=NOW), validation.Rejection)
    other = custom("video_played", T0, price=-1)
    assert isinstance(validation.validate(other, now=NOW, schemas=SCHEMAS), CustomEvent)


def test_a_key_the_sender_chose_shows_as_key_and_more_errors_are_counted() -> None:
    schemas = CustomSchemas({"form_sent": {"additionalProperties": {"type": "integer"}}})
    event = custom("form_sent", T0, **{"ann@example.com": "x", "b": "y", "c": "z", "d": "w"})
    rejection = validation.validate(event, now=NOW, schemas=schemas)
    assert isinstance(rejection, validation.Rejection)
    assert "'properties.[key]'" in rejection.detail and "(+1 more)" in rejection.detail
    assert "ann@" not in rejection.detail


def test_a_required_error_for_a_property_that_is_there_is_not_reported() -> None:
    # jsonschema-rs adds one beside additionalProperties refusing the required property.
    schemas = CustomSchemas(
        {"form_sent": {"required": ["a"], "properties": {"b": {}}, "additionalProperties": False}}
    )
    problem = schemas.violation("form_sent", {"a": 1})
    assert problem == (
        "custom event form_sent violates its schema: "
        "'properties': does not satisfy 'additionalProperties' false [additionalProperties]"
    )


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_folder_of_schemas_is_read_at_start_up(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "schemas",
        {"wishlist_added.json": json.dumps(WISHLIST), "README.md": "not a schema"},
    )
    rules = Rules.from_settings(Settings(custom_event_schemas=str(folder)))
    assert rules.custom_schemas.names == {"wishlist_added"}
    assert rules.custom_schemas == CustomSchemas({"wishlist_added": WISHLIST}, str(folder))
    assert Rules.from_settings(Settings()).custom_schemas.names == frozenset()


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (
            {"Wishlist-Added.json": "{}"},
            "Wishlist-Added.json: the file's name is that of its custom event, and it must be",
        ),
        (
            {"page_viewed.json": "{}"},
            "page_viewed.json: the file's name is that of its custom event, and it is a built-in",
        ),
        (
            {"views_30d.json": "{}"},
            "views_30d.json: the file's name is that of its custom event, and it must not end in",
        ),
        ({"w.json": '{"type": "object",\n "required": [}'}, "w.json: line 2, column 15: not JSON"),
        ({"w.json": '{"type": 12}'}, "w.json: not a valid JSON Schema at /type"),
        ({"w.json": '{"$ref": "common.json"}'}, "w.json: not a valid JSON Schema at its root"),
        ({"w.json": '{"$ref": "https://example.com/s.json"}'}, "retrieving it failed"),
        ({"w.json": "[]"}, "w.json: a schema is a JSON object (or true/false), got list"),
        ({"w.json": '{"pattern": "(?<x"}'}, "w.json: not a valid JSON Schema at /pattern"),
    ],
)
def test_a_schema_file_that_does_not_check_out_stops_the_start_naming_it(
    tmp_path: Path, files: dict[str, str], says: str
) -> None:
    folder = write(tmp_path / "schemas", files)
    with pytest.raises(CustomSchemaError) as raised:
        Rules.from_settings(Settings(custom_event_schemas=str(folder)))
    assert str(folder) in str(raised.value) and says in str(raised.value), raised.value
    assert isinstance(raised.value, ValueError)  # the roles' start-up reports it and exits 2


def test_a_missing_folder_is_named_with_the_setting(tmp_path: Path) -> None:
    with pytest.raises(CustomSchemaError, match=r"CDPULSE_CUSTOM_EVENT_SCHEMAS=.*no such folder"):
        CustomSchemas.load(str(tmp_path / "nope"))


# --- the decode stage ------------------------------------------------------------------------


def message(offset: int, event: dict[str, Any] | bytes, key: str = CUSTOMER) -> Message:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return Message("cdp.clickstream", 0, offset, key.encode(), raw, (T0 + DAY) / 1000)


def test_the_decode_stage_holds_custom_events_to_their_schemas_on_both_paths() -> None:
    good, bad = wish(T0), wish(T0 + 1, price=-3)
    # The slow path: a timestamp as text with an offset, which the fast decoder leaves to
    # the contract.
    slow = {**wish(T0 + 2, price=-4), "timestamp": "2026-01-01T01:00:00+01:00"}
    deep = json.dumps(custom("video_played", T0)).encode()
    deep = deep.replace(b'"properties": {}', b'"properties": {"n": ' + b"[" * 5000 + b"]" * 5000)
    batch = [message(i, e) for i, e in enumerate([good, bad, slow, deep])]
    decoded = decode_batch(batch, max_bytes=65536, max_future_skew=timedelta(0), schemas=SCHEMAS)
    assert [i.event.event_id for i in decoded.items] == [good["event_id"]]
    letters = [(d.offset, d.reason) for d in decoded.dead_letters]
    assert letters == [(1, "schema_violation"), (2, "schema_violation"), (3, "invalid_json")]
    assert "'properties.price'" in decoded.dead_letters[1].detail
    assert decoded.rejected == Counter({"schema_violation": 2, "invalid_json": 1})
    # No registry: both are taken.
    plain = decode_batch(batch[:3], max_bytes=65536, max_future_skew=timedelta(0))
    assert len(plain.items) == 3


# --- the profile ------------------------------------------------------------------------------


def test_custom_events_count_per_name_in_every_window() -> None:
    as_of = T0 + 10 * DAY + 12 * HOUR + 7 * MINUTE  # 12:07 on day 10
    oldest = {
        "1h": T0 + 10 * DAY + 11 * HOUR + 10 * MINUTE,  # buckets 11:10 .. 12:05
        "24h": T0 + 9 * DAY + 13 * HOUR,  # buckets 13:00 the day before .. 12:00
        "7d": T0 + 4 * DAY,  # days 4 .. 10
        "30d": T0 - 19 * DAY,  # days -19 .. 10
    }
    events = [wish(t) for t in oldest.values()] + [wish(t - 1) for t in oldest.values()]
    events.append(custom("video_played", as_of))
    got = rendered(events, Rules(), as_of)
    assert got["custom_counts"] == {
        "video_played": {"total": 1, "1h": 1, "24h": 1, "7d": 1, "30d": 1},
        "wishlist_added": {"total": 8, "1h": 1, "24h": 3, "7d": 5, "30d": 7},
    }
    assert got["counts"]["custom"] == 9 and got["sessions"] >= 1


def test_a_registered_name_is_shown_even_before_it_is_sent() -> None:
    rules = Rules(custom_schemas=SCHEMAS)
    got = rendered([custom("video_played", T0)], rules)
    assert got["custom_counts"]["wishlist_added"] == dict.fromkeys(
        ("total", "1h", "24h", "7d", "30d"), 0
    )


def test_the_cap_keeps_registered_names_and_the_first_others_alphabetically() -> None:
    rules = Rules(custom_names_kept=2, custom_schemas=CustomSchemas({"zebra_seen": {}}))
    events = [custom(n, T0 + i) for i, n in enumerate(("d_x", "c_x", "zebra_seen", "b_x", "a_x"))]
    events += [custom("d_x", T0 + 10), custom("a_x", T0 + 11)]
    dropped: Counter[str] = Counter()
    profile = new_profile(CUSTOMER)
    for event in events:
        apply(profile, parsed(event), rules, dropped=dropped)
    assert sorted(profile.custom_counts) == ["a_x", "b_x", "zebra_seen"]
    assert profile.custom_counts["a_x"].total == 2
    # d_x and c_x pushed out by b_x and a_x, then d_x refused once more
    assert dropped[limits.counted(limits.CUSTOM_NAMES)] == 3
    assert limits.CUSTOM_NAMES in limits.LISTS
    assert oracle.differences(render(profile, newest(events), rules), truth(events, rules)) == []


def test_withholding_analytics_drops_the_counts() -> None:
    rules = Rules(traits=TRAITS, custom_schemas=SCHEMAS)
    withdraw = {
        "event_id": "consent-1",
        "type": "consent_updated",
        "timestamp": T0 + 5,
        "customer_id": CUSTOMER,
        "channel": "web",
        "properties": {"purposes": {"analytics": False}},
    }
    got = rendered([wish(T0), custom("video_played", T0 + 1), withdraw], rules)
    assert got["custom_counts"] == {
        "wishlist_added": dict.fromkeys(("total", "1h", "24h", "7d", "30d"), 0)
    }


NAMES = ("a_x", "b_x", "video_played", "wishlist_added", "z_x")
CAPPED = Rules(traits=TRAITS, custom_names_kept=2, custom_schemas=CustomSchemas({"z_x": {}}))


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One customer's custom events, some sent as the visitor before logging in."""
    events = []
    for _ in range(draw(st.integers(1, 25))):
        t = T0 + draw(st.integers(0, 40 * 24)) * HOUR + draw(st.integers(0, 11)) * 5 * MINUTE
        event = custom(draw(st.sampled_from(NAMES)), t)
        if draw(st.booleans()):
            del event["customer_id"]
            event["anonymous_id"] = "a-1"
        events.append(event)
    login = {
        "event_id": "login",
        "type": "identify",
        "timestamp": T0 + draw(st.integers(0, 40 * 24)) * HOUR,
        "customer_id": CUSTOMER,
        "anonymous_id": "a-1",
        "channel": "web",
    }
    return [*events, login]


@settings(max_examples=150, deadline=None)
@given(st.data(), histories())
def test_any_order_and_any_merge_give_the_oracles_capped_counts(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    want = truth(events, CAPPED)
    shuffled = data.draw(st.permutations(events))
    assert oracle.differences(render(applied(shuffled, CAPPED), newest(events), CAPPED), want) == []
    # The visitor's events in a profile of their own, merged in at the login.
    before = data.draw(st.integers(0, len(shuffled)))
    customer, visitor = new_profile(CUSTOMER), new_profile("a-1")
    for event in shuffled[:before]:
        apply(visitor if "customer_id" not in event else customer, parsed(event), CAPPED)
    merge(customer, visitor, CAPPED)
    for event in shuffled[before:]:
        apply(customer, parsed(event), CAPPED)
    assert oracle.differences(render(customer, newest(events), CAPPED), want) == []


# --- segment fields ----------------------------------------------------------------------------


def test_segments_read_custom_counts_and_an_unknown_name_is_absent() -> None:
    rules = Rules(custom_schemas=CustomSchemas({"trial_started": {}}))
    events = [wish(T0), wish(T0 + 8 * DAY), custom("video_played", T0 + 9 * DAY)]
    profile = applied(events, rules)
    record = profile_fields(profile, rules)
    assert record["custom"] == {
        "wishlist_added": 2,
        "wishlist_added_1h": 0,
        "wishlist_added_24h": 0,
        "wishlist_added_7d": 1,
        "wishlist_added_30d": 2,
        "video_played": 1,
        "video_played_1h": 1,
        "video_played_24h": 1,
        "video_played_7d": 1,
        "video_played_30d": 1,
        "trial_started": 0,
        "trial_started_1h": 0,
        "trial_started_24h": 0,
        "trial_started_7d": 0,
        "trial_started_30d": 0,
    }
    wanted = document_fields(
        render(profile, profile.last_seen, rules),
        next_purchase=next_purchase_view(profile, None, profile.last_seen),
    )
    assert dict(record) == wanted
    values = record.field_values

    def decide(source: str) -> bool | None:
        return Condition.compile(source).decide(values)

    assert decide("custom.wishlist_added_7d > 0") is True
    assert decide("custom.wishlist_added_1h > 0") is False
    assert decide("custom.trial_started == 0") is True  # registered: its zero is known
    # Never counted and not registered: unknown, so no member either way round.
    assert decide("custom.banner_closed_7d > 0") is None
    assert decide("custom.banner_closed_7d == 0") is None
    assert decide("!has(custom.banner_closed) || custom.banner_closed == 0") is True


def test_a_custom_segment_is_entered_once_and_a_redelivered_batch_counts_nothing_twice() -> None:
    book = parse(
        "rfm: false\nsegments:\n  - name: wishlisters\n    when: custom.wishlist_added_7d > 0\n"
    )
    rules = Rules(traits=TRAITS, custom_schemas=SCHEMAS)
    state, outlet = MemoryState(), MemoryOutlet()
    pipeline = ProfilePipeline(
        state, outlet, Stages(Engine(rules, Models(), book=book)), partitions=1
    )
    first = [custom("video_played", T0), wish(T0 + MINUTE), wish(T0 + 2 * MINUTE, price=-1)]
    resent = wish(T0 + MINUTE)  # the client's retry: the same event id
    resent["event_id"] = first[1]["event_id"]
    second = [resent, wish(T0 + 3 * MINUTE)]
    batches = [
        [message(i, e) for i, e in enumerate(first)],
        [message(3 + i, e) for i, e in enumerate(second)],
    ]

    async def run() -> None:
        for batch in batches:
            await pipeline.run(batch)
            before = dict(state.blobs)
            again = await pipeline.run(batch)  # redelivered: the worker died before its commit
            assert dict(state.blobs) == before and again.work.counts["applied"] == 0

    asyncio.run(run())
    stored = decode(state.blobs[CUSTOMER][1])
    events = [e for batch in (first, second) for e in batch]
    want = oracle.expected(events, now=NOW, schemas=SCHEMAS).profiles[CUSTOMER]
    assert oracle.differences(render(stored, stored.last_seen, rules), want) == []
    assert want["custom_counts"]["wishlist_added"]["total"] == 2
    letters = [json.loads(v) for v in outlet.values(Stream.DEAD_LETTER)]
    # dead-lettered again with its redelivery (at least once), the same letter
    assert {(d["offset"], d["reason"], d["detail"]) for d in letters} == {
        (2, "schema_violation", letters[0]["detail"])
    }
    assert "'properties.price'" in letters[0]["detail"]
    transitions = [json.loads(v) for v in outlet.values(Stream.SEGMENTS)]
    assert [(t["segment"], t["change"]) for t in transitions] == [("wishlisters", "entered")]
