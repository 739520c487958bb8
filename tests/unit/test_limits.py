"""Caps on the per-profile lists: the newest (or strongest) kept whatever the arrival
order, merge capped alike, every dropped entry counted once by list, bytes bounded."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import msgspec
from prometheus_client import REGISTRY

from cdpulse.app.reporting import record_batch
from cdpulse.contract.mirror import Event
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile import limits
from cdpulse.profile.model import Profile, encode
from cdpulse.profile.rules import Rules, apply, merge, new_profile
from cdpulse.profile.view import cart_view
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.situations import SESSION_VIEWS_KEPT
from tests import oracle
from tests.unit.test_pipeline import ev as message_event
from tests.unit.test_pipeline import in_order
from tests.unit.test_profile_rules import CUSTOMER, RULES, T0, add, ev, parsed, remove, view
from tests.unit.test_triggers import CONFIG, GAP
from tests.unit.test_triggers import view as watched_view

MINUTE = oracle.MINUTE


def capped(**caps: int) -> Rules:
    return Rules(traits=RULES.traits, **caps)


def run(
    events: list[dict[str, Any]], rules: Rules, profile_id: str = CUSTOMER
) -> tuple[Profile, Counter[str]]:
    profile, dropped = new_profile(profile_id), Counter[str]()
    for event in events:
        apply(profile, parsed(event), rules, dropped=dropped)
    return profile, dropped


def shuffled(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    out = list(events)
    random.Random(seed).shuffle(out)
    return out


def same_except_bookkeeping(a: Profile, b: Profile) -> None:
    """Equal as profiles, but for the dedupe window's packing (it depends on arrival
    order), affinity's rounding (rescaled to its reference in another order) and the
    order of a cart line's changes (a set: appended as they arrive)."""
    assert msgspec.structs.replace(a, seen_ids={}, affinity={}, cart={}) == msgspec.structs.replace(
        b, seen_ids={}, affinity={}, cart={}
    )
    assert {p: (line.price, sorted(line.changes)) for p, line in a.cart.items()} == {
        p: (line.price, sorted(line.changes)) for p, line in b.cart.items()
    }
    assert a.affinity.keys() == b.affinity.keys()
    assert all(abs(a.affinity[c] - b.affinity[c]) < 1e-9 for c in a.affinity)


# --- the cart ------------------------------------------------------------------------------


def test_the_cart_keeps_the_most_recently_changed_products_in_any_order() -> None:
    events = [add(T0 + i * MINUTE, f"P{i:03}") for i in range(300)]
    rules = capped(cart_lines_kept=10)
    profile, dropped = run(events, rules)
    assert sorted(profile.cart) == [f"P{i:03}" for i in range(290, 300)]
    assert dropped[limits.counted(limits.CART)] == 290
    assert dropped[limits.counted(limits.CART_CHANGES)] == 290
    for seed in range(3):
        other, counts = run(shuffled(events, seed), rules)
        same_except_bookkeeping(profile, other)
        # every change not kept is counted once: trimmed, or passed by the horizon late
        assert counts[limits.counted(limits.CART_CHANGES)] == 290


def test_a_see_saw_on_one_product_keeps_its_newest_changes_in_any_order() -> None:
    events = [
        (add if i % 2 == 0 else remove)(T0 + i * MINUTE, "P1") for i in range(201)
    ]  # ends on an add: one in the cart
    profile, dropped = run(events, RULES)
    [line] = profile.cart.values()
    assert len(line.changes) == limits.CART_CHANGES_KEPT
    assert sorted(line.changes) == [
        (T0 + i * MINUTE, 1 if i % 2 == 0 else -1) for i in range(169, 201)
    ]
    # Trimmed like a checkout: the add the oldest kept removal undid is gone, so the net
    # since the horizon is 0, not the 1 a full history gives (README: the cart's cap).
    assert cart_view(profile)["items"] == []
    assert dropped[limits.counted(limits.CART_CHANGES)] == 201 - limits.CART_CHANGES_KEPT
    for seed in range(3):
        other, counts = run(shuffled(events, seed), RULES)
        same_except_bookkeeping(profile, other)
        assert counts[limits.counted(limits.CART_CHANGES)] == 201 - limits.CART_CHANGES_KEPT


def test_merge_caps_the_cart_as_applying_every_event_to_one_profile_does() -> None:
    rules = capped(cart_lines_kept=10)
    mine = [add(T0 + 2 * i * MINUTE, f"C{i}") for i in range(8)]
    theirs = [add(T0 + (2 * i + 1) * MINUTE, f"V{i}", anonymous=True) for i in range(8)]
    customer, _ = run(mine, rules)
    visitor, _ = run(theirs, rules, "a-1")
    dropped = Counter[str]()
    merge(customer, visitor, rules, dropped)
    both, _ = run(mine + theirs, rules)
    assert customer.cart == both.cart and customer.cart_cleared_at == both.cart_cleared_at
    assert sorted(customer.cart) == ["C3", "C4", "C5", "C6", "C7", "V3", "V4", "V5", "V6", "V7"]
    assert dropped[limits.counted(limits.CART)] == 6


# --- affinity ------------------------------------------------------------------------------


def test_affinity_keeps_the_strongest_categories_in_any_order() -> None:
    events = [view(T0 + i * MINUTE, f"P{i}", category=f"c{i:03}") for i in range(300)]
    rules = capped(affinity_kept=20)
    profile, dropped = run(events, rules)
    assert sorted(profile.affinity) == [f"c{i:03}" for i in range(280, 300)]
    assert dropped[limits.counted(limits.AFFINITY)] == 280
    for seed in range(3):
        other, counts = run(shuffled(events, seed), rules)
        assert other.affinity.keys() == profile.affinity.keys()
        for category, score in profile.affinity.items():
            assert abs(other.affinity[category] - score) < 1e-9  # rescaled in another order
        assert counts[limits.counted(limits.AFFINITY)] == 280


def test_merge_keeps_the_strongest_categories_of_both() -> None:
    rules = capped(affinity_kept=20)
    mine = [view(T0 + 2 * i * MINUTE, "P", category=f"m{i:02}") for i in range(15)]
    theirs = [view(T0 + (2 * i + 1) * MINUTE, "P", category=f"v{i:02}") for i in range(15)]
    customer, _ = run(mine, rules)
    visitor, _ = run([{**e, "customer_id": "a-1"} for e in theirs], rules, "a-1")
    dropped = Counter[str]()
    merge(customer, visitor, rules, dropped)
    both, _ = run(mine + theirs, rules)
    assert customer.affinity.keys() == both.affinity.keys()
    assert min(customer.affinity) == "m05" and dropped[limits.counted(limits.AFFINITY)] == 10


# --- the trigger watch ---------------------------------------------------------------------


def test_one_sessions_views_are_capped_and_high_intent_still_fires() -> None:
    engine = TriggerEngine(CONFIG, session_gap=GAP)
    profile = Profile(id="C-1", customer_id="C-1")
    dropped = Counter[str]()
    events: list[Event] = [watched_view(T0 + i, i, f"P{i:04}") for i in range(1000)]
    events += [watched_view(T0 + 1000 + i, 1000 + i, "Z") for i in range(3)]
    for e in events:
        engine.observe(profile, e, e.at, dropped)
    assert profile.watch is not None
    assert len(profile.watch.views) == SESSION_VIEWS_KEPT
    assert dropped[limits.counted(limits.WATCH_VIEWS)] == 1001 - SESSION_VIEWS_KEPT
    assert [p.products for p in profile.watch.pending] == [["Z"]]


# --- the counter ---------------------------------------------------------------------------


def test_drops_reach_the_metric_by_list_through_the_batch_report() -> None:
    rules = capped(cart_lines_kept=2)
    pipeline = ProfilePipeline(
        MemoryState(), MemoryOutlet(), Stages(Engine(rules, Models())), partitions=4
    )
    adds = [
        message_event("product_added", i, customer_id="C", product_id=f"P{i}", quantity=1)
        for i in range(5)
    ]
    sample = "cdpulse_profile_list_dropped_total"
    before = REGISTRY.get_sample_value(sample, {"list": "cart"}) or 0.0
    report = asyncio.run(pipeline.run(in_order(adds)[0]))
    assert report.work.counts[limits.counted(limits.CART)] == 3
    record_batch(report)
    assert REGISTRY.get_sample_value(sample, {"list": "cart"}) == before + 3


# --- bytes per profile ---------------------------------------------------------------------


def test_bytes_stay_bounded_for_a_pathological_customer() -> None:
    profile = new_profile(CUSTOMER)
    events = [view(T0 + i, f"P{i}", category=f"c{i}") for i in range(100_000)]
    events += [add(T0 + 100_000 + i, f"A{i}") for i in range(10_000)]
    events += [(add if i % 2 else remove)(T0 + 110_000 + i, "A0") for i in range(5_000)]
    for e in events:
        apply(profile, parsed(e), RULES)
    window = len(msgspec.msgpack.encode(profile.seen_ids))  # capped by dedupe_ids: 80 KB
    assert window <= RULES.dedupe_ids * 8 + 100
    rest = len(encode(profile)) - window
    assert rest < 16_000, rest
    assert len(profile.affinity) == RULES.affinity_kept
    assert len(profile.cart) <= RULES.cart_lines_kept


def test_visitor_ids_are_the_only_list_that_grows_with_them() -> None:
    """10,000 visitor ids linked: the profile grows by the ids themselves (kept for
    erasure, see Profile.anonymous_ids), nothing else."""
    ids = [f"a-{i:05}" for i in range(10_000)]
    one, _ = run([ev("identify", T0, anonymous_id=ids[0])], RULES)
    many, _ = run([ev("identify", T0 + i, anonymous_id=a) for i, a in enumerate(ids)], RULES)
    grown = len(encode(msgspec.structs.replace(many, seen_ids={}))) - len(
        encode(msgspec.structs.replace(one, seen_ids={}))
    )
    assert grown <= sum(len(a) + 1 for a in ids[1:]) + 16
