"""RFM scoring against exact quintiles, the named grid, memberships and transitions."""

from __future__ import annotations

import asyncio
import bisect
import random
from itertools import product

import pytest

from cdpulse.contract.outputs import SegmentTransition
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import parse
from cdpulse.segments.rfm import GRID, SEGMENTS, quintile, segment_of
from cdpulse.segments.sketches import RfmSketches
from cdpulse.segments.tracker import PENDING_SECONDS, SegmentTracker
from cdpulse.store.segments import MemoryMembershipStore

DAY = 86_400_000


def exact_rank(ordered: list[float], value: float) -> float:
    """Share of ``ordered`` (sorted) strictly below ``value``, counted exactly."""
    return bisect.bisect_left(ordered, value) / len(ordered)


def exact_score(ordered: list[float], value: float) -> int:
    return quintile(exact_rank(ordered, value))


@pytest.fixture(scope="module")
def base() -> list[tuple[int, int, float]]:
    rng = random.Random(7)
    return [
        (
            rng.randrange(0, 365 * DAY),
            1 + int(rng.expovariate(0.7)),  # many ties: most customers order once or twice
            round(rng.lognormvariate(4, 1), 2),
        )
        for _ in range(20_000)
    ]


def test_sketch_scores_are_the_exact_quintiles_away_from_the_edges(
    base: list[tuple[int, int, float]],
) -> None:
    sketches = RfmSketches.build(base)
    band = sketches.recency.normalized_rank_error(False)  # KLL's bound, 99% confidence
    columns = [sorted(float(row[i]) for row in base) for i in range(3)]
    disagreements = 0
    for row in random.Random(1).sample(base, 2_000):
        got = sketches.score(*row)
        assert got is not None
        for axis, (column, value) in enumerate(zip(columns, row, strict=True)):
            want = exact_score(column, float(value))
            have = (got.r, got.f, got.m)[axis]
            if have == want:
                continue
            rank = exact_rank(column, float(value))
            near_edge = min(abs(rank - k / 5) for k in range(1, 5)) <= band
            assert near_edge and abs(have - want) == 1, (axis, value, rank, have, want)
            disagreements += 1
    assert disagreements < 0.05 * 2_000 * 3


def test_sketches_of_two_workers_merge_into_the_whole(base: list[tuple[int, int, float]]) -> None:
    whole = RfmSketches.build(base)
    merged = RfmSketches.build(base[:7_000])
    merged.merge(RfmSketches.build(base[7_000:]))
    assert merged.customers == whole.customers == len(base)
    band = whole.recency.normalized_rank_error(False)
    for value in (30 * DAY, 180 * DAY, 300 * DAY):
        exact = exact_rank(sorted(float(r[0]) for r in base), float(value))
        assert abs(merged.recency.get_rank(float(value), False) - exact) <= band


def test_sketches_round_trip_through_bytes(base: list[tuple[int, int, float]]) -> None:
    sketches = RfmSketches.build(base[:500])
    again = RfmSketches.from_bytes(sketches.to_bytes())
    assert all(again.score(*row) == sketches.score(*row) for row in base[:500])
    with pytest.raises(ValueError, match="header says"):
        RfmSketches.from_bytes(sketches.to_bytes() + b"x")


def test_empty_base_scores_nobody() -> None:
    assert RfmSketches.empty().score(0, 1, 1.0) is None


def test_the_grid_names_every_score_and_uses_every_segment() -> None:
    used = {segment_of(r, f, m) for r, f, m in product(range(1, 6), repeat=3)}
    assert used == set(SEGMENTS) and len(SEGMENTS) == 11
    assert len({s.id for s in SEGMENTS}) == 11
    # The best recent customers are champions; the oldest small ones are lost.
    assert segment_of(5, 5, 5).id == "champions" and segment_of(1, 1, 1).id == "lost"
    assert all(segment_of(r, 5, 5).id in {"cant_lose_them", "at_risk"} for r in (1, 2))
    assert all(len(row) == 5 for row in GRID)
    with pytest.raises(ValueError, match="r=0 is outside 1-5"):
        segment_of(0, 1, 1)


BOOK = parse(
    """
segments:
  - name: big_cart
    when: cart_value > 100.0
  - name: repeat
    when: orders >= 2
  - name: risky
    when: churn_risk > 0.5
"""
)


def _profile(orders: int, last_seen: int, cart: float = 0.0) -> Profile:
    from cdpulse.profile.model import CartLine

    p = Profile(id="C-1", customer_id="C-1", first_seen=0, last_seen=last_seen, events=orders)
    p.orders = orders
    p.revenue = 50.0 * orders
    p.first_order_at = 0 if orders else None
    p.last_order_at = last_seen if orders else None
    if cart:
        p.cart["P-1"] = CartLine(category="shoes", price=cart, price_at=0, changes=[(0, 1)])
    return p


def test_a_tracker_publishes_each_change_once() -> None:
    store = MemoryMembershipStore()
    sketches = RfmSketches.build([(DAY * i, 1 + i % 4, 20.0 * i) for i in range(1, 50)])
    tracker = SegmentTracker(BOOK, Rules(), store, lambda: sketches)

    async def run() -> None:
        first = await tracker.evaluate([_profile(1, DAY, cart=150.0)])
        entered = {t.segment for t in first.transitions if t.entered}
        assert {"big_cart"} <= entered and "repeat" not in entered
        assert len(entered & {s.id for s in SEGMENTS}) == 1  # exactly one RFM segment
        assert first.errors == ["risky"]  # no churn score yet: not a member, reported
        await tracker.stage(first.transitions, 0)
        await tracker.clear(first.transitions)
        assert (await tracker.evaluate([_profile(1, DAY, cart=150.0)])).transitions == []
        second = await tracker.evaluate([_profile(2, 2 * DAY)])
        changes = {(t.segment, t.entered, t.generation) for t in second.transitions}
        assert {("big_cart", False, 2), ("repeat", True, 1)} <= changes
        await tracker.stage(second.transitions, 0)
        await tracker.clear(second.transitions)
        assert await store.members("repeat", "", 10) == ["C-1"]
        assert (await store.sizes(["big_cart", "repeat"])) == {"big_cart": 0, "repeat": 1}
        assert await tracker.recover(10**12, exclude=set()) == []

    asyncio.run(run())


def test_transitions_of_a_worker_that_died_before_clearing_are_published_again() -> None:
    store = MemoryMembershipStore()
    tracker = SegmentTracker(BOOK, Rules(), store, lambda: None)

    async def run() -> None:
        lost = (await tracker.evaluate([_profile(2, DAY, cart=150.0)])).transitions
        assert {t.id for t in lost} == {"C-1:big_cart:1", "C-1:repeat:1"}
        await tracker.stage(lost, now_ms=1_000)  # ... and the worker dies before clear
        # Not yet stale for recovery; but the customer's next change publishes them first.
        assert await tracker.recover(1_000 + 1_000, exclude=set()) == []
        stale = await tracker.recover(1_000 + PENDING_SECONDS * 1000 + 1, exclude=set())
        assert stale == lost
        later = (await tracker.evaluate([_profile(3, 2 * DAY)])).transitions
        assert later[: len(lost)] == lost
        assert [t.id for t in later[len(lost) :]] == ["C-1:big_cart:2"]  # left, from gen 1
        await tracker.stage(later, now_ms=5_000)
        await tracker.clear(later)
        assert await tracker.recover(10**12, exclude=set()) == []
        # A clear for an older staging never clears a newer one.
        newer = (await tracker.evaluate([_profile(3, 3 * DAY, cart=200.0)])).transitions
        await tracker.stage(newer, now_ms=6_000)
        await tracker.clear(later)
        assert await tracker.recover(10**12, exclude=set()) == newer

    asyncio.run(run())


def test_without_a_sketch_rfm_is_left_undecided() -> None:
    store = MemoryMembershipStore()
    tracker = SegmentTracker(BOOK, Rules(), store, lambda: None)
    batch = asyncio.run(tracker.evaluate([_profile(3, DAY)]))
    assert {t.segment for t in batch.transitions} == {"repeat"}


def test_anonymous_visitors_are_not_segmented() -> None:
    tracker = SegmentTracker(BOOK, Rules(), MemoryMembershipStore(), lambda: None)
    visitor = Profile(id="a-1", last_seen=DAY, events=1)
    assert asyncio.run(tracker.evaluate([visitor])).transitions == []


def test_a_transition_document_meets_its_schema() -> None:
    store = MemoryMembershipStore()
    tracker = SegmentTracker(BOOK, Rules(), store, lambda: None)
    batch = asyncio.run(tracker.evaluate([_profile(3, DAY)]))
    for t in batch.transitions:
        document = SegmentTransition.model_validate_json(t.to_json())
        assert document.transition_id == t.id and document.change == "entered"


def test_member_pages_never_repeat_an_id() -> None:
    store = MemoryMembershipStore()
    from cdpulse.segments.membership import Transition

    ids = [f"C-{i:03d}" for i in range(25)]
    asyncio.run(store.stage([Transition(i, "repeat", True, 0, 1) for i in reversed(ids)], 0))
    seen: list[str] = []
    after = ""
    while page := asyncio.run(store.members("repeat", after, 10)):
        seen += page
        after = page[-1]
    assert seen == ids


def test_a_customer_who_stops_buying_drifts_out_of_champions_by_the_sweep() -> None:
    from cdpulse.models.clv.lifetime import OrderSummary

    store = MemoryMembershipStore()
    me = OrderSummary(orders=9, first_order_at=0, last_order_at=100 * DAY, net_revenue=900.0)
    others = [(DAY * i, 1 + i % 3, 30.0 * i) for i in range(1, 100)]
    box = [RfmSketches.build([*others, (100 * DAY, 9, 900.0)])]
    tracker = SegmentTracker(BOOK, Rules(), store, lambda: box[0])

    async def run() -> None:
        first = await tracker.sweep_rfm({"C-1": me}, 100 * DAY)
        assert [(t.segment, t.entered) for t in first] == [("champions", True)]
        await tracker.stage(first, 0)
        await tracker.clear(first)
        assert await tracker.sweep_rfm({"C-1": me}, 101 * DAY) == []
        # The base moves on: everyone else buys later, and more, than C-1.
        box[0] = RfmSketches.build(
            [(DAY * (200 + i), 10 + i % 3, 1000.0 + i) for i in range(99)] + [(100 * DAY, 9, 900)]
        )
        moved = await tracker.sweep_rfm({"C-1": me}, 300 * DAY)
        assert [(t.segment, t.entered, t.at_ms) for t in moved] == [
            ("champions", False, 300 * DAY),
            ("lost", True, 300 * DAY),
        ]

    asyncio.run(run())


def test_the_lazy_record_equals_the_rendered_profile_on_a_simulated_shop() -> None:
    """Fields computed group by group must equal those of the whole rendered document."""
    import json

    from cdpulse.contract.message import Message
    from cdpulse.pipeline.batch import ProfilePipeline
    from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.profile.view import render
    from cdpulse.segments.fields import document_fields, profile_fields
    from cdpulse.simulate.shop import Shop

    events = list(Shop(customers=60, days=20, seed=4).events())
    messages = [
        Message(
            "t",
            0,
            i,
            (e.get("customer_id") or e["anonymous_id"]).encode(),
            json.dumps(e).encode(),
            0,
        )
        for i, e in enumerate(events)
    ]
    rules = Rules()
    stages = Stages(Engine(rules, Models()))
    pipeline = ProfilePipeline(MemoryState(), MemoryOutlet(), stages, partitions=1)
    saved = list(asyncio.run(pipeline.run(messages)).work.saved.values())
    assert len(saved) > 50
    rfm = {"r": 1, "f": 2, "m": 3, "score": "123", "segment": "lost"}
    for profile in saved:
        profile.churn_risk = 0.25 if profile.orders else None
        wanted = document_fields(render(profile, profile.last_seen, rules), profile.churn_risk, rfm)
        assert dict(profile_fields(profile, rules, rfm)) == wanted, profile.id
