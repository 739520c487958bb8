"""The fast decoder against the contract: same accept/reject, same values.

The reference is the contract's own path (json, then the pydantic models). The fast
decoder may refuse what the contract accepts (``validation.decode`` then asks the
contract), but whatever it accepts the contract must accept with the same values; and
the simulator's valid events must all take the fast path, or the speed it buys is gone.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract import events as contract
from cdpulse.contract import mirror, validation
from cdpulse.contract.events import EVENT_ADAPTER, EVENT_TYPES
from cdpulse.simulate import malformed
from cdpulse.simulate.shop import simulate
from tests.chaos.hostile import NASTY_NUMBERS, NASTY_TEXT, Mutator

NOW = datetime(2026, 2, 1, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def reference(raw: bytes) -> dict[str, Any] | str:
    """The contract's reading of ``raw``: the event as plain data, or why not (the size
    limit is the caller's, as for the fast decoder)."""
    try:
        obj = json.loads(raw.decode("utf-8"))
        event = EVENT_ADAPTER.validate_python(obj)
    except Exception as exc:  # any failure is a rejection; which one is validation's job
        return type(exc).__name__
    plain = event.model_dump(mode="json")
    plain.pop("timestamp")
    plain["at"] = int(event.timestamp.timestamp() * 1000 + 0.5)
    return plain


def plain(event: mirror.Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(event)
    out.pop("timestamp")
    out["type"] = event.type
    return out


def agree(raw: bytes) -> bool:
    """Whether the fast decoder took ``raw``; asserts it agrees with the contract."""
    fast = mirror.decode(raw)
    if fast is None:
        return False
    truth = reference(raw)
    assert isinstance(truth, dict), f"accepted what the contract rejects: {raw[:300]!r}"
    assert plain(fast) == truth, raw[:300]
    return True


def shop_lines(seed: int, customers: int = 200, days: int = 10) -> list[bytes]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        json.dumps(e, separators=(",", ":")).encode()
        for e in simulate(customers=customers, days=days, seed=seed, start=start)
    ]


def test_every_simulated_event_takes_the_fast_path_with_the_contracts_values() -> None:
    lines = shop_lines(seed=3, days=14)  # two weeks: long enough for a refund
    taken = sum(agree(raw) for raw in lines)
    assert taken == len(lines)
    kinds = {json.loads(raw)["type"] for raw in lines}
    # Custom events are a shop's own tracking plan: the simulated shop sends none (their
    # parity: test_custom_events_agree).
    assert kinds >= set(EVENT_TYPES) - {"erasure_requested", "customers_merged", "custom"}


def test_malformed_events_are_refused_with_the_contracts_reason() -> None:
    rng = random.Random(7)
    for line in shop_lines(seed=4, customers=50, days=3):
        for kind in malformed.MALFORMED_KINDS:
            raw, reason = malformed.malformed_event(rng, json.loads(line), kind)
            agree(raw)
            now = datetime.now(UTC)  # the future-timestamp kind is relative to now
            result = validation.decode(raw, now=now)
            assert isinstance(result, validation.Rejection)
            assert result.reason == reason, (kind, result)


@pytest.mark.parametrize("seed", range(4))
def test_hostile_mutations_agree(seed: int) -> None:
    mutate = Mutator(seed)
    for raw in shop_lines(seed=seed, customers=40, days=2):
        _, mutated = mutate(json.loads(raw))
        agree(mutated)


def test_custom_events_agree() -> None:
    names = ("Wishlist", "1st_visit", "a" * 65, "", "x\n", "order_completed", "views_7d", 7)
    refused = [(custom(name), "'name'") for name in names]
    refused += [(custom("ok", p), "'properties") for p in ([1], "x", {"n": 1e400}, {"n": [NaN]})]
    assert all(agree(json.dumps(e).encode()) for e in CUSTOM)
    for event, field in refused:
        raw = json.dumps(event).encode()
        assert mirror.decode(raw) is None, event
        result = validation.decode(raw, now=NOW)
        assert isinstance(result, validation.Rejection) and result.reason == "invalid_field"
        assert field in result.detail, (event, result.detail)


def test_ids_ending_in_a_newline_are_refused_like_the_contract_does() -> None:
    # Python's `$` matches before a final newline; the contract's regex does not.
    event = json.loads(shop_lines(seed=5, customers=5, days=1)[0])
    event["event_id"] = "e-1\n"
    raw = json.dumps(event).encode()
    assert mirror.decode(raw) is None
    assert isinstance(validation.decode(raw, now=NOW), validation.Rejection)


def test_calendar_edge_timestamps_are_rejections_not_crashes() -> None:
    event = json.loads(shop_lines(seed=5, customers=5, days=1)[0])
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        event["timestamp"] = stamp
        result = validation.decode(json.dumps(event).encode(), now=NOW)
        assert isinstance(result, validation.Rejection)
        assert result.reason == validation.INVALID_FIELD
        assert "out of range" in result.detail


def test_the_future_skew_boundary_is_the_contracts() -> None:
    event = json.loads(shop_lines(seed=5, customers=5, days=1)[0])
    for offset_ms in (-1, 0, 1):
        moment = NOW + SKEW + timedelta(milliseconds=offset_ms)
        event["timestamp"] = moment.isoformat()
        result = validation.decode(json.dumps(event).encode(), now=NOW, max_future_skew=SKEW)
        rejected = isinstance(result, validation.Rejection)
        assert rejected == (offset_ms > 0), offset_ms


# --- hypothesis: documents near the contract ---------------------------------------------

_text = st.one_of(st.text(max_size=20), st.sampled_from(NASTY_TEXT), st.text(min_size=120))
_number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([v for v in NASTY_NUMBERS if not isinstance(v, list | dict)]),
)
_value = st.one_of(_text, _number, st.booleans(), st.none())


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    event = json.loads(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(0, 3))):
        where = event
        path = draw(st.sampled_from(_PATHS))
        for part in path[:-1]:
            where = where.setdefault(part, {}) if isinstance(where, dict) else {}
        if isinstance(where, dict):
            if draw(st.booleans()):
                where[path[-1]] = draw(_value)
            else:
                where.pop(path[-1], None)
    return event


def custom(name: Any, properties: Any = None) -> dict[str, Any]:
    event = {
        "event_id": "c-1",
        "type": "custom",
        "timestamp": 1767225600000,
        "customer_id": "C-1",
        "channel": "web",
        "name": name,
    }
    return event if properties is None else event | {"properties": properties}


NaN = float("nan")
CUSTOM = [
    custom("wishlist_added", {"product_id": "P-1", "price": 3.5, "tags": ["a", {"b": None}]}),
    custom("video_played", {"seconds": 2**70, "ratio": -0.0, "ok": True, "deep": [[[[]]]]}),
    custom("a" + "_b" * 31),
]
_SAMPLES = [line.decode() for line in shop_lines(seed=6, customers=30, days=3)[:400]] + [
    json.dumps(e) for e in CUSTOM
]
_PATHS: list[tuple[str, ...]] = [
    ("event_id",),
    ("type",),
    ("timestamp",),
    ("customer_id",),
    ("anonymous_id",),
    ("channel",),
    ("context", "locale"),
    ("context", "campaign", "source"),
    ("properties", "product_id"),
    ("properties", "category"),
    ("properties", "price"),
    ("properties", "quantity"),
    ("properties", "revenue"),
    ("properties", "currency"),
    ("properties", "order_id"),
    ("properties", "traits", "plan"),
    ("properties", "traits", "email"),
    ("properties", "purposes", "marketing"),
    ("properties", "url"),
    ("properties", "query"),
    ("properties", "results"),
    ("name",),
    ("properties", "tags"),
    ("properties", "seconds"),
]


@settings(max_examples=400, deadline=None)
@given(documents())
def test_generated_documents_agree(event: dict[str, Any]) -> None:
    try:
        raw = json.dumps(event).encode()
    except (TypeError, ValueError):
        return
    agree(raw)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31)),
    st.sampled_from(["Z", "z", "+00:00", "+01:30", "-11:00"]),
    st.integers(0, 3),
)
def test_event_time_agrees_with_the_contract_on_every_timestamp_form(
    moment: datetime, zone: str, cut: int
) -> None:
    text = moment.isoformat(timespec="milliseconds") + zone
    for candidate in (text, text[: len(text) - cut]):
        try:
            want: int | None = int(contract.parse_timestamp(candidate).timestamp() * 1000 + 0.5)
        except ValueError:
            want = None
        try:
            got: int | None = mirror.event_time(candidate)
        except ValueError:
            got = None
        assert got == want, candidate


@pytest.mark.parametrize("escape", ["\\n", "\\t", "\\u0000", "\\u001f", "\\u001F"])
def test_an_escaped_control_character_in_an_id_is_refused_in_other_text_kept(
    escape: str,
) -> None:
    """Ids are checked for control characters without a pattern: only an escape can make
    one in JSON, and a message holding one is left to the contract, which refuses it in
    an id and keeps it, as written, in a title."""

    def page(event_id: str, title: str) -> bytes:
        text = json.dumps(
            {
                "event_id": event_id,
                "type": "page_viewed",
                "timestamp": "2026-01-31T10:00:00.000Z",
                "anonymous_id": "a-1",
                "channel": "web",
                "properties": {"url": "https://shop.example/", "title": title},
            }
        )
        return text.replace("\\\\", "\\").encode()  # the escape as written, not escaped

    in_id = page(f"e{escape}1", "Home")
    assert mirror.decode(in_id) is None
    refused = validation.decode(in_id, now=NOW)
    assert isinstance(refused, validation.Rejection)
    assert refused.reason == validation.INVALID_FIELD
    in_title = page("e-1", f"Ho{escape}me")
    assert mirror.decode(in_title) is None  # the contract decides
    kept = validation.decode(in_title, now=NOW)
    assert isinstance(kept, mirror.PageViewedEvent)
    assert kept.properties.title == json.loads(in_title)["properties"]["title"]
    with pytest.raises(ValueError):
        mirror.from_dict(json.loads(in_id))
