"""The dedupe window: a client's repeat is dropped within the window in event time,
however many events came between, with a bounded number of ids per profile."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from cdpulse.app.reporting import record_batch
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile import dedupe
from cdpulse.profile.model import Profile, decode, encode
from cdpulse.profile.rules import Rules, apply, apply_new, merge, new_profile
from tests import oracle
from tests.unit.test_pipeline import T0, in_order
from tests.unit.test_pipeline import ev as message_event
from tests.unit.test_profile_rules import CUSTOMER, NOW, RULES, VISITOR, parsed, view

DAY, MINUTE = oracle.DAY, oracle.MINUTE
WINDOW = RULES.dedupe_days


def views(n: int, start: int, spread: int) -> list[dict[str, Any]]:
    """``n`` views of the customer, evenly over ``spread`` ms from ``start``."""
    return [view(start + i * spread // n, f"P{i % 50}") for i in range(n)]


def oracle_applies(events: list[dict[str, Any]]) -> int:
    """How many of ``events`` the oracle applies (one owner: the customer)."""
    return len(oracle.distinct(oracle.valid_events(events, now=NOW), {}))


def run(events: list[dict[str, Any]], rules: Rules = RULES) -> tuple[Profile, list[bool]]:
    profile = new_profile(CUSTOMER)
    return profile, [apply(profile, parsed(e), rules) for e in events]


def test_a_repeat_after_5000_other_events_within_the_window_is_dropped() -> None:
    first = view(T0, "P1")
    events = [first, *views(5_000, T0 + MINUTE, 6 * DAY), first]
    profile, outcomes = run(events)
    assert outcomes[-1] is False and all(outcomes[:-1])
    assert profile.events == 5_001
    assert oracle_applies(events) == 5_001  # the oracle drops the same repeat


def test_the_window_holds_for_whole_days_and_no_further() -> None:
    first = view(T0 + 23 * oracle.HOUR, "P1")  # late on its day
    at_edge = view(T0 + WINDOW * DAY, "P2")  # first day of the window's reach: caught
    past = view(T0 + (WINDOW + 1) * DAY, "P3")  # one day on: forgotten
    _, outcomes = run([first, at_edge, first])
    assert outcomes == [True, True, False]
    profile, outcomes = run([first, past, first])
    assert outcomes == [True, True, True]  # at least once beyond the window
    assert profile.events == 3
    assert oracle_applies([first, at_edge, first]) == 2
    assert oracle_applies([first, past, first]) == 3


def test_an_event_older_than_the_window_is_applied_and_its_repeat_too() -> None:
    newest = view(T0 + 20 * DAY, "P1")
    late = view(T0, "P2")  # 20 days behind the profile's newest: cannot be judged
    profile, outcomes = run([newest, late, late])
    assert outcomes == [True, True, True]
    assert days_of(profile) == [(T0 + 20 * DAY) // DAY]  # nothing kept for it
    assert oracle_applies([newest, late, late]) == 3


def days_of(profile: Profile) -> list[int]:
    return sorted(day for days in profile.seen_ids.values() for day in days)


def test_a_repeat_is_judged_by_its_own_source_however_far_another_ran_ahead() -> None:
    """After a restart a profile's topics are read at their own pace: a clickstream
    repeat must be caught even when the customer's transactions topic already delivered
    events weeks of event time later (a chaos run with killed workers found this)."""
    profile = new_profile(CUSTOMER)
    clicks, orders = "t.clickstream:0:C", "t.transactions:0:C"
    first = view(T0, "P1")
    assert apply(profile, parsed(first), RULES, clicks, 10)
    assert apply(profile, parsed(view(T0 + 20 * DAY, "P2")), RULES, orders, 3)
    assert not apply(profile, parsed(first), RULES, clicks, 11)  # the client's repeat
    assert profile.events == 2
    # On its own source the window still moves on: 8 days later the id is forgotten.
    assert apply(profile, parsed(view(T0 + 8 * DAY, "P3")), RULES, clicks, 12)
    assert apply(profile, parsed(first), RULES, clicks, 13)


def test_a_repeat_with_another_timestamp_is_caught_on_any_kept_day() -> None:
    first = view(T0, "P1")
    moved = {**first, "timestamp": T0 + 3 * DAY}
    _, outcomes = run([first, view(T0 + DAY, "P2"), moved])
    assert outcomes == [True, True, False]


def test_merge_unions_the_windows_so_a_repeat_after_identify_is_dropped() -> None:
    visitors = [view(T0 + i * MINUTE, f"P{i}", anonymous=True) for i in range(3_000)]
    visitor = new_profile(VISITOR)
    for event in visitors:
        apply(visitor, parsed(event), RULES)
    customer, _ = run(views(3_000, T0, 5 * DAY))
    assert merge(customer, visitor, RULES) == 0
    for event in visitors:
        assert not apply(customer, parsed(event), RULES)
    assert customer.events == 6_000
    assert dedupe.size(customer.seen_ids) == 6_000


def test_merge_prunes_days_the_newer_side_has_left_behind() -> None:
    visitor = new_profile(VISITOR)
    old = view(T0, "P1", anonymous=True)
    apply(visitor, parsed(old), RULES)
    customer, _ = run([view(T0 + 10 * DAY, "P2")])
    merge(customer, visitor, RULES)
    assert days_of(customer) == [(T0 + 10 * DAY) // DAY]
    assert apply(customer, parsed(old), RULES)


def test_the_cap_drops_the_oldest_ids_first_and_says_how_many() -> None:
    rules = Rules(traits=RULES.traits, dedupe_ids=100)
    events = views(150, T0, 3 * DAY)
    profile = new_profile(CUSTOMER)
    dropped = sum(apply_new(profile, parsed(e), rules) for e in events)
    assert dropped == 50
    assert dedupe.size(profile.seen_ids) == 100
    assert [apply(profile, parsed(e), rules) for e in (events[49], events[50])] == [True, False]


def test_the_cap_trims_the_newest_day_itself_when_it_alone_holds_more() -> None:
    window: dedupe.Window = {}
    keys = [dedupe.hashed(f"e{i}") for i in range(30)]
    dropped = [dedupe.add(window, key, T0 + i, days=WINDOW, cap=10) for i, key in enumerate(keys)]
    assert sum(dropped) == 20 and list(window[0].values()) == [b"".join(keys[20:])]


def test_a_match_straddling_two_kept_ids_is_not_a_member() -> None:
    a, b = dedupe.hashed("a"), dedupe.hashed("b")
    window = {0: {0: a + b}}
    assert dedupe.holds(window, a) and dedupe.holds(window, b)
    assert not dedupe.holds(window, a[4:] + b[:4])


def test_a_match_straddling_two_days_or_sources_is_not_a_member() -> None:
    a, b, c = dedupe.hashed("a"), dedupe.hashed("b"), dedupe.hashed("c")
    window = {0: {0: a, 1: b}, 7: {0: c}}  # searched as one run of keys: a, b, c
    assert all(dedupe.holds(window, key) for key in (a, b, c))
    assert not dedupe.holds(window, a[4:] + b[:4])
    assert not dedupe.holds(window, b[1:] + c[:1])


def test_bytes_per_profile_stay_bounded_by_the_cap() -> None:
    cap = 2_000
    rules = Rules(traits=RULES.traits, dedupe_ids=cap)
    profile = new_profile(CUSTOMER)
    for event in views(6_000, T0, 10 * DAY):  # 600 a day: the cap binds
        apply(profile, parsed(event), rules)
    size = len(msgspec.msgpack.encode(profile.seen_ids))
    assert cap * dedupe.ID_BYTES <= size <= cap * dedupe.ID_BYTES + 10 * (WINDOW + 1) + 8
    assert len(days_of(profile)) <= WINDOW + 1


def test_the_cap_reaches_the_metric_through_the_batch_report() -> None:
    rules = Rules(traits=RULES.traits, dedupe_ids=10)
    pipeline = ProfilePipeline(
        MemoryState(), MemoryOutlet(), Stages(Engine(rules, Models())), partitions=4
    )
    batch = in_order([message_event("page_viewed", i, customer_id="C") for i in range(25)])[0]
    before = REGISTRY.get_sample_value("cdpulse_dedupe_ids_dropped_total") or 0.0
    report = asyncio.run(pipeline.run(batch))
    assert report.work.counts["dedupe_ids_dropped"] == 15
    record_batch(report)
    assert REGISTRY.get_sample_value("cdpulse_dedupe_ids_dropped_total") == before + 15


def test_a_profile_stored_with_recent_ids_still_decodes() -> None:
    old = msgspec.msgpack.encode({"id": CUSTOMER, "events": 2, "recent_ids": ["e1", "e2"]})
    profile = decode(old)
    assert (profile.id, profile.events, profile.seen_ids) == (CUSTOMER, 2, {})
    assert decode(encode(profile)) == profile


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), repeats=st.floats(0.05, 0.5))
def test_the_engine_and_the_oracle_drop_the_same_repeats(seed: int, repeats: float) -> None:
    # Events over 30 days arriving up to 12 days out of order, repeated at any delay.
    rng = random.Random(seed)
    events = [view(T0 + rng.randrange(30 * DAY), "P1") for _ in range(60)]
    stream: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: e["timestamp"] + rng.randrange(12 * DAY)):
        stream.append(event)
        if rng.random() < repeats:
            stream.append(rng.choice(stream))
    profile, outcomes = run(stream)
    assert sum(outcomes) == oracle_applies(stream) == profile.events
