"""Send time: the hour-of-week fold against the oracle, the send window, and its evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.models.send_time import best_hour, best_window, in_window, send_window
from cdpulse.models.send_time_eval import evaluate
from cdpulse.profile.rules import apply, merge, new_profile
from cdpulse.profile.send_hours import WEEKS_KEPT
from cdpulse.profile.view import render
from cdpulse.simulate.shop import Shop
from tests import oracle
from tests.unit.test_profile_rules import CUSTOMER, RULES, T0, VISITOR, ev, parsed

HOUR, DAY = oracle.HOUR, oracle.DAY
KINDS = ("email_opened", "email_clicked", "page_viewed", "order_completed", "product_viewed")
OFFSETS = (None, 0, 60, -300, 330, 540)  # minutes east of UTC; None: epoch milliseconds


def stamped(t: int, offset: int | None) -> str | int:
    """``t`` written as the contract allows: epoch ms, or RFC 3339 text at an offset."""
    if offset is None:
        return t
    local = datetime.fromtimestamp(t / 1000, UTC) + timedelta(minutes=offset)
    sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{t % 1000:03d}"
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def event(kind: str, t: int, offset: int | None, anonymous: bool) -> dict[str, Any]:
    if kind == "order_completed":
        item = {"product_id": "P1", "category": "shoes", "price": 1.0, "quantity": 1}
        props: dict[str, Any] = {"order_id": "O", "revenue": 1.0, "currency": "EUR"}
        made = ev(kind, t, anonymous=anonymous, items=[item], **props)
    elif kind == "page_viewed":
        made = ev(kind, t, anonymous=anonymous, url="/")
    elif kind == "product_viewed":
        made = ev(kind, t, anonymous=anonymous, product_id="P1", category="shoes", price=1.0)
    elif kind == "email_clicked":
        made = ev(kind, t, anonymous=anonymous, campaign_id="n1", url="https://shop/")
    else:
        made = ev(kind, t, anonymous=anonymous, campaign_id="n1")
    made["timestamp"] = stamped(t, offset)
    return made


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Activity spread over up to 20 weeks, so old weeks are pruned, at any offset."""
    size = draw(st.integers(1, 40))
    return [
        event(
            draw(st.sampled_from(KINDS)),
            T0 + draw(st.integers(0, 140 * 24)) * HOUR + draw(st.integers(0, 59)) * 60_000,
            draw(st.sampled_from(OFFSETS)),
            draw(st.booleans()),
        )
        for _ in range(size)
    ]


def newest(events: list[dict[str, Any]]) -> int:
    return max(oracle.millis(e["timestamp"]) for e in events)


@settings(max_examples=150, deadline=None)
@given(st.data(), histories())
def test_send_hours_are_the_oracles_in_any_arrival_order_and_after_a_merge(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    as_of = newest(events) + data.draw(st.integers(0, 3)) * 7 * DAY
    want = oracle.profile(CUSTOMER, events, as_of)["send_hours"]
    shuffled = data.draw(st.permutations(events))
    # One profile all along, in either order.
    for arrival in (events, shuffled):
        profile = new_profile(CUSTOMER)
        for e in arrival:
            apply(profile, parsed(e), RULES)
        assert render(profile, as_of, RULES)["send_hours"] == want
    # The visitor's events in a profile of their own, merged into the customer's.
    customer, visitor = new_profile(CUSTOMER), new_profile(VISITOR)
    for e in shuffled:
        apply(visitor if "customer_id" not in e else customer, parsed(e), RULES)
    merge(customer, visitor, RULES)
    assert render(customer, as_of, RULES)["send_hours"] == want


def test_a_week_older_than_the_kept_weeks_is_dropped_whenever_it_arrives() -> None:
    old = event("email_opened", T0, None, anonymous=False)
    new = event("page_viewed", T0 + WEEKS_KEPT * 7 * DAY, None, anonymous=False)
    for arrival in ([old, new], [new, old]):
        profile = new_profile(CUSTOMER)
        for e in arrival:
            apply(profile, parsed(e), RULES)
        assert sum(profile.send_hours.values()) == 1  # the page view alone


def test_the_local_hour_comes_from_the_timestamps_offset() -> None:
    profile = new_profile(CUSTOMER)
    # 2026-01-05 is a Monday: 14:30 UTC is 20:00 in India (+05:30).
    t = int(datetime(2026, 1, 5, 14, 30, tzinfo=UTC).timestamp() * 1000)
    for week in range(3):
        e = event("email_opened", t + week * 7 * DAY, 330, anonymous=False)
        apply(profile, parsed(e), RULES)
    window = send_window(profile, profile.last_seen)
    assert window is not None
    assert (window.hour, window.hours, window.days) == (20, (19, 21), ("Mon",))
    assert window.reason == (
        "usually active Mon 19-21h (100% of recent opens, clicks, visits and orders)"
    )


def test_the_window_wraps_midnight_and_ties_go_to_the_earliest_hour() -> None:
    weights = {23: 30, 24 + 0: 30}  # Mon 23h, Tue 00h: windows at 23h and 0h tie
    window = best_window(weights)
    assert window is not None and window.hour == 0 and window.hours == (23, 1)
    assert window.reason.startswith("usually active Mon, Tue 23-01h")
    assert in_window(0, 23) and in_window(22, 23) and not in_window(1, 23)
    assert best_hour([1] * 24) == 0


def test_too_little_activity_gives_no_window() -> None:
    weights = {20: 23}  # less than one open this week
    assert best_window(weights) is None
    assert send_window(new_profile(CUSTOMER), T0) is None


def test_the_send_window_beats_the_global_best_hour_on_the_simulated_shop() -> None:
    shop = Shop(customers=250, days=42, seed=3)
    result = evaluate(shop.events())
    assert result.rejected == 0
    assert result.scored > 100
    # Customers read email at an hour of their own (simulate/shop.py: reading hours);
    # one hour for everyone catches only the ones near the most common hour.
    assert result.model_hit_rate > result.baseline_hit_rate + 0.1, result
