"""An event time is judged against its message's Kafka timestamp, not the wall clock,
so a live worker and ``cdpulse rebuild`` decide the same message the same way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract import validation
from cdpulse.contract.message import Message
from cdpulse.pipeline.decode import Decoded, decode_batch

SKEW = timedelta(minutes=5)
EVENT_TIME = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WALL_CLOCKS = (
    EVENT_TIME - timedelta(days=1),  # a clock far behind: the old check refused everything
    EVENT_TIME,
    EVENT_TIME + timedelta(days=400),  # a rebuild a year later: the old check took anything
)


def _message(appended: float | None, offset: int = 0) -> Message:
    event = {
        "event_id": f"e-{offset}",
        "type": "product_viewed",
        "timestamp": EVENT_TIME.isoformat().replace("+00:00", "Z"),
        "anonymous_id": "A-1",
        "channel": "web",
        "properties": {"product_id": "P-1", "category": "c", "price": 1.0},
    }
    return Message("cdp.clickstream", 0, offset, b"A-1", json.dumps(event).encode(), appended)


def _decode(messages: list[Message], now: datetime) -> Decoded:
    return decode_batch(messages, max_bytes=65536, max_future_skew=SKEW, now=now)


def test_ten_minutes_after_its_kafka_timestamp_is_refused_one_minute_is_not() -> None:
    late = (EVENT_TIME - timedelta(minutes=10)).timestamp()
    close = (EVENT_TIME - timedelta(minutes=1)).timestamp()
    for now in WALL_CLOCKS:
        decoded = _decode([_message(late, 0), _message(close, 1)], now)
        assert [i.message.offset for i in decoded.items] == [1], now
        [letter] = decoded.dead_letters
        assert (letter.reason, letter.offset) == (validation.FUTURE_TIMESTAMP, 0)
        assert "600s ahead of its Kafka timestamp" in letter.detail, letter.detail


def test_a_message_without_a_kafka_timestamp_is_judged_against_the_wall_clock() -> None:
    for missing in (None, -0.001):  # no timestamp; Kafka's -1 ms
        refused = _decode([_message(missing)], EVENT_TIME - timedelta(minutes=10))
        assert [d.reason for d in refused.dead_letters] == [validation.FUTURE_TIMESTAMP]
        assert "ahead of now (no Kafka timestamp)" in refused.dead_letters[0].detail
        accepted = _decode([_message(missing)], EVENT_TIME - timedelta(minutes=1))
        assert len(accepted.items) == 1 and not accepted.dead_letters


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-3600_000, max_value=3600_000),
    st.integers(min_value=-400 * 86400, max_value=400 * 86400),
)
def test_the_decision_depends_on_the_kafka_timestamp_alone(ahead_ms: int, clock_s: int) -> None:
    appended = EVENT_TIME.timestamp() - ahead_ms / 1000
    live = _decode([_message(appended)], EVENT_TIME)
    rebuild = _decode([_message(appended)], EVENT_TIME + timedelta(seconds=clock_s))
    refused = ahead_ms > SKEW.total_seconds() * 1000
    for decoded in (live, rebuild):
        assert [d.reason for d in decoded.dead_letters] == (
            [validation.FUTURE_TIMESTAMP] if refused else []
        )
        assert len(decoded.items) == (0 if refused else 1)
