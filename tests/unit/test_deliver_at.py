"""A firing's ``deliver_at``: the next start of the customer's send window, in their time.

The expected time is computed here from the events themselves with ``datetime`` (local
hours, weekdays and the next start found by walking calendar days), not from the
profile's stored histogram; only the choice of the window among hours is the shared
``best_window``, tested on its own in test_send_time.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.models.send_time import DELIVER_WEEKS, best_window, deliver_at
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import apply, merge, minimise, new_profile
from cdpulse.profile.send_hours import WEIGHTS
from cdpulse.profile.watch import Pending
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.engine import Expired
from cdpulse.triggers.outputs import trigger_messages
from cdpulse.triggers.rules import TriggerConfig
from tests import oracle
from tests.unit.test_profile_rules import CUSTOMER, RULES, VISITOR, parsed
from tests.unit.test_send_time import event

HOUR, DAY = oracle.HOUR, oracle.DAY
WEEK = 7 * DAY
# Minutes east of UTC, half and three-quarter hours and west too; None: epoch ms, Z: "Z".
OFFSETS: tuple[int | str | None, ...] = (None, "Z", 0, 60, -300, 330, 345, -210, -570, 840)
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(kind: str, moment: datetime, offset: int | str | None, anonymous: bool = False) -> Any:
    """An event of ``kind`` at the UTC ``moment``, its timestamp written at ``offset``."""
    made = event(kind, ms(moment), None if offset == "Z" else offset, anonymous)
    if offset == "Z":
        made["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"
    return made


def written(e: dict[str, Any]) -> int | None:
    """The offset (minutes) the event's timestamp names; None for Z or a number."""
    stamp = e["timestamp"]
    if isinstance(stamp, int) or stamp.endswith("Z"):
        return None
    local = datetime.fromisoformat(stamp).utcoffset()
    assert local is not None
    return int(local.total_seconds() // 60)


def expected(events: list[dict[str, Any]], fired: int) -> int | None:
    """deliver_at by its definition: the window of the DELIVER_WEEKS whole weeks before
    the firing's, its next start in the newest offset those weeks wrote (else UTC)."""
    week = fired // WEEK
    weights: dict[int, int] = {}
    newest: tuple[int, int] | None = None
    for e in events:
        t = oracle.millis(e["timestamp"])
        w = t // WEEK
        if not week - DELIVER_WEEKS <= w < week:
            continue
        minutes = written(e)
        if minutes is not None and (newest is None or (t, minutes) > newest):
            newest = (t, minutes)
        if e["type"] in WEIGHTS:
            local = datetime.fromtimestamp(t / 1000, UTC) + timedelta(minutes=minutes or 0)
            hour = local.weekday() * 24 + local.hour
            weights[hour] = weights.get(hour, 0) + WEIGHTS[e["type"]] * (8 - (week - w))
    window = best_window(weights)
    if window is None:
        return None
    offset = timedelta(minutes=newest[1] if newest else 0)
    local_fired = datetime.fromtimestamp(fired / 1000, UTC) + offset
    day = local_fired.replace(hour=0, minute=0, second=0, microsecond=0)
    for k in range(9):
        middle = day + timedelta(days=k, hours=window.hour)
        start = middle - timedelta(hours=1)
        named = not window.days or middle.strftime("%a") in window.days
        if start >= local_fired and named:
            return ms(start - offset)
    raise AssertionError("a window starts within a week")


def applied(events: list[dict[str, Any]]) -> Profile:
    profile = new_profile(CUSTOMER)
    for e in events:
        apply(profile, parsed(e), RULES)
    return profile


def opens(hour: int, days: range, offset: int | str | None, weeks: int = 2) -> list[Any]:
    """Email opens at ``hour`` local on ``days`` (0 = Monday) of the weeks before MONDAY."""
    shift = timedelta(minutes=offset if isinstance(offset, int) else 0)
    return [
        at(
            "email_opened",
            MONDAY - timedelta(weeks=w) + timedelta(days=d, hours=hour) - shift,
            offset,
        )
        for w in range(1, weeks + 1)
        for d in days
    ]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_deliver_at_is_its_definition_whatever_arrives_after_the_firing(
    data: st.DataObject,
) -> None:
    fired = ms(MONDAY) + data.draw(st.integers(0, 7 * 24 * 60)) * 60_000
    kinds = st.sampled_from((*WEIGHTS, "product_viewed"))
    # Activity in the kept weeks before, and after the firing up to its next week's end:
    # what a batch cut elsewhere may or may not have applied when the firing is decided.
    # (Not two weeks past the firing's: by then the profile prunes a week it reads.)
    week = fired // WEEK
    times = st.integers((week - 7) * WEEK, (week + 2) * WEEK - 1)
    events = [
        at(
            data.draw(kinds),
            datetime.fromtimestamp(t / 1000, UTC),
            data.draw(st.sampled_from(OFFSETS)),
            data.draw(st.booleans()),
        )
        for t in data.draw(st.lists(times, min_size=1, max_size=40))
    ]
    want = expected(events, fired)
    before = [e for e in events if oracle.millis(e["timestamp"]) <= fired]
    assert deliver_at(applied(before), fired) == want
    shuffled = data.draw(st.permutations(events))
    assert deliver_at(applied(shuffled), fired) == want
    # The visitor's events in a profile of their own, merged into the customer's.
    customer, visitor = new_profile(CUSTOMER), new_profile(VISITOR)
    for e in shuffled:
        apply(visitor if "customer_id" not in e else customer, parsed(e), RULES)
    merge(customer, visitor, RULES)
    assert deliver_at(customer, fired) == want
    if want is not None:
        assert want >= fired


def test_the_window_starts_in_the_customers_own_offset() -> None:
    fired = ms(MONDAY + timedelta(hours=12))  # Monday 12:00 UTC
    cases = {
        # offset (minutes) -> the UTC start of the 19-21h window after Monday 12:00 UTC
        120: MONDAY + timedelta(hours=17),  # 19h at +02:00 is 17h UTC, later that day
        330: MONDAY + timedelta(hours=13, minutes=30),  # India: 19h is 13:30 UTC
        345: MONDAY + timedelta(hours=13, minutes=15),  # Nepal
        -210: MONDAY + timedelta(hours=22, minutes=30),  # Newfoundland: 19h is 22:30 UTC
        -570: MONDAY + timedelta(days=1, hours=4, minutes=30),  # Marquesas, Tuesday UTC
        600: MONDAY + timedelta(days=1, hours=9),  # +10:00: Monday 19h passed (9h UTC)
    }
    for offset, start in cases.items():
        events = opens(20, range(7), offset)
        assert deliver_at(applied(events), fired) == ms(start) == expected(events, fired), offset


def test_a_window_named_for_days_waits_for_one_of_them() -> None:
    # Opens Thursday and Friday 20h at -05:00; fired Monday: Thursday 19h local.
    events = opens(20, range(3, 5), -300)
    profile = applied(events)
    fired = ms(MONDAY)
    thursday = MONDAY + timedelta(days=3, hours=19 + 5)
    assert deliver_at(profile, fired) == ms(thursday) == expected(events, fired)
    # Fired during Friday's window: the next start is next Thursday's.
    friday = ms(MONDAY + timedelta(days=4, hours=19 + 5, minutes=30))
    assert deliver_at(profile, friday) == ms(thursday + timedelta(weeks=1))


def test_a_window_across_midnight_starts_the_evening_before_its_day() -> None:
    # Opens at Saturday 00h local (+01:00): the window 23-01h of Saturday starts Friday
    # 23h local, 22h UTC.
    events = opens(0, range(5, 6), 60, weeks=3)
    fired = ms(MONDAY)
    friday = MONDAY + timedelta(days=4, hours=22)
    assert deliver_at(applied(events), fired) == ms(friday) == expected(events, fired)


def test_no_window_no_offset_or_no_analytics() -> None:
    fired = ms(MONDAY)
    # One open a week ago is less than one open this week (MIN_EVIDENCE).
    assert deliver_at(applied(opens(20, range(1), 60, weeks=1)), fired) is None
    # Activity only in the firing's own week does not count (it may be partly applied).
    this_week = [at("email_opened", MONDAY + timedelta(hours=h), 60) for h in (1, 2)]
    assert deliver_at(applied(this_week * 3), fired + DAY) is None
    # No numeric offset known: the hours were counted in UTC, and so is the start.
    events = opens(20, range(7), "Z")
    assert deliver_at(applied(events), fired) == ms(MONDAY + timedelta(hours=19))
    profile = applied(opens(20, range(7), 60))
    minimise(profile)
    assert profile.utc_offsets == {} and deliver_at(profile, fired) is None


def test_fired_messages_carry_deliver_at_unless_the_rule_sends_now() -> None:
    config = TriggerConfig.model_validate(
        {
            "rules": [
                {"name": "cart", "kind": "cart_abandoned"},
                {"name": "intent_now", "kind": "high_intent", "deliver": "now"},
                {"name": "service", "kind": "cross_sell", "marketing": False},
                {
                    "name": "timed",
                    "kind": "win_back",
                    "marketing": False,
                    "deliver": "best_window",
                },
            ]
        }
    )
    fired = ms(MONDAY)
    profile = applied(opens(20, range(7), 60))
    decisions = [
        Decision(f"{rule}:{CUSTOMER}:k", CUSTOMER, Pending(rule, "k", fired), "fired")
        for rule in ("cart", "intent_now", "service", "timed")
    ]
    messages = trigger_messages(
        Expired(decisions, [], {CUSTOMER: profile}), config, None, "", lambda i: i
    )
    start = datetime(2026, 1, 5, 18, tzinfo=UTC)  # 19h at +01:00
    assert {m.rule: m.deliver_at for m in messages} == {
        "cart": start,
        "intent_now": None,
        "service": None,
        "timed": start,
    }
    assert '"deliver_at":"2026-01-05T18:00:00Z"' in messages[0].model_dump_json()
