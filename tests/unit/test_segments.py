"""RFM scoring against exact quintiles, the named grid, memberships and transitions."""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import random
from itertools import product
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdpulse.contract.message import Message
from cdpulse.contract.outputs import SegmentTransition
from cdpulse.models.clv.lifetime import OrderSummary
from cdpulse.models.next_purchase import next_purchase_view
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile.model import CartLine, Profile, decode, encode
from cdpulse.profile.rules import Rules
from cdpulse.profile.view import affinity_view, render
from cdpulse.segments.compiler import ERROR, Values, modelled
from cdpulse.segments.definitions import SegmentBook, parse
from cdpulse.segments.expressions import EvaluationError
from cdpulse.segments.fields import (
    FIELDS,
    TOP_CATEGORIES,
    FieldValues,
    document_fields,
    profile_fields,
    rounded,
)
from cdpulse.segments.membership import (
    Decision,
    Transition,
    changes,
    decide,
    enter,
    evaluate,
    rfm_moves,
    transitions,
)
from cdpulse.segments.rfm import GRID, SEGMENTS, RfmScore, quintile, score_of, segment_of
from cdpulse.segments.sketches import RfmSketches
from cdpulse.simulate.shop import Shop

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
    p = Profile(id="C-1", customer_id="C-1", first_seen=0, last_seen=last_seen, events=orders)
    p.orders = orders
    p.revenue = 50.0 * orders
    p.first_order_at = 0 if orders else None
    p.last_order_at = last_seen if orders else None
    if cart:
        p.cart["P-1"] = CartLine(category="shoes", price=cart, price_at=0, changes=[(0, 1)])
    return p


def test_each_change_is_decided_once_from_the_generations_the_profile_holds() -> None:
    sketches = RfmSketches.build([(DAY * i, 1 + i % 4, 20.0 * i) for i in range(1, 50)])
    profile = _profile(1, DAY, cart=150.0)
    first, errors = changes(BOOK, profile, Rules(), sketches)
    entered = {t.segment for t in first if t.entered}
    assert {"big_cart"} <= entered and "repeat" not in entered
    assert len(entered & {s.id for s in SEGMENTS}) == 1  # exactly one RFM segment
    assert errors == ("risky",)  # no churn score yet: not a member, reported
    enter(profile, first)  # the generations, saved with the profile
    assert changes(BOOK, profile, Rules(), sketches)[0] == []  # nothing changed: nothing
    later = _profile(2, 2 * DAY)
    later.segments = dict(profile.segments)
    second, _ = changes(BOOK, later, Rules(), sketches)
    found = {(t.segment, t.entered, t.generation) for t in second}
    assert {("big_cart", False, 2), ("repeat", True, 1)} <= found


def test_without_a_sketch_rfm_is_left_undecided() -> None:
    found, _ = changes(BOOK, _profile(3, DAY), Rules(), None)
    assert {t.segment for t in found} == {"repeat"}


def test_anonymous_visitors_are_not_segmented() -> None:
    visitor = Profile(id="a-1", last_seen=DAY, events=1)
    assert changes(BOOK, visitor, Rules(), None) == ([], ())


def test_a_transition_document_meets_its_schema() -> None:
    found, _ = changes(BOOK, _profile(3, DAY), Rules(), None)
    for t in found:
        document = SegmentTransition.model_validate_json(t.to_json())
        assert document.transition_id == t.id and document.change == "entered"


def test_a_customer_who_stops_buying_drifts_out_of_champions_by_the_sweep() -> None:
    me = _profile(9, 100 * DAY)
    me.revenue = 900.0
    others = [(DAY * i, 1 + i % 3, 30.0 * i) for i in range(1, 100)]
    sketches = RfmSketches.build([*others, (100 * DAY, 9, 900.0)])
    first = rfm_moves(me, sketches.score_profile(me), 100 * DAY)
    assert [(t.segment, t.entered) for t in first] == [("champions", True)]
    enter(me, first)
    assert rfm_moves(me, sketches.score_profile(me), 101 * DAY) == []
    # The base moves on: everyone else buys later, and more, than this customer.
    moved_base = RfmSketches.build(
        [(DAY * (200 + i), 10 + i % 3, 1000.0 + i) for i in range(99)] + [(100 * DAY, 9, 900)]
    )
    moved = rfm_moves(me, moved_base.score_profile(me), 300 * DAY)
    assert [(t.segment, t.entered, t.at_ms) for t in moved] == [
        ("champions", False, 300 * DAY),
        ("lost", True, 300 * DAY),
    ]
    assert rfm_moves(Profile(id="a-1"), moved_base.score_profile(me), 300 * DAY) == []


def test_the_lazy_record_equals_the_rendered_profile_on_a_simulated_shop() -> None:
    """Fields computed group by group must equal those of the whole rendered document."""
    events = list(Shop(customers=60, days=20, seed=4).events())
    messages = [
        Message(
            "t",
            0,
            i,
            (e.get("customer_id") or e["anonymous_id"]).encode(),
            json.dumps(e).encode(),
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
        wanted = document_fields(
            render(profile, profile.last_seen, rules),
            profile.churn_risk,
            rfm,
            next_purchase_view(profile, None, profile.last_seen),
        )
        assert dict(profile_fields(profile, rules, rfm)) == wanted, profile.id


# --- decide(): the fast path against the rendered document, field by field ---------------

RICH_BOOK = parse(
    """
segments:
  - name: high_value_at_risk
    when: churn_risk > 0.7 && revenue_30d > 200.0
  - name: book_lovers
    when: '"books" in top_categories'
  - name: big_cart
    when: cart_value > 100.0
  - name: repeat_buyer
    when: orders >= 2
  - name: marketable_champions
    when: rfm.segment == "champions" && has(consent.marketing) && consent.marketing
  - name: busy
    when: events_1h >= 2 || orders_24h > 0 || revenue_7d > 50.0 || events_30d > 10
  - name: recent
    when: recency_days < 7.0 && days_since_first_seen > 1.0
  - name: money
    when: net_revenue > 100.0 || average_order_value >= 40.0 || revenue > 500.0
  - name: browsing
    when: counts.product_viewed > 3 && "web" in channels
  - name: engaged
    when: sessions > 2 && events > 10 && refunds == 0 && cart_items >= 1
  - name: fashion
    when: has(category_affinity.fashion) && category_affinity.fashion > 1.0
  - name: someone
    when: customer_id != "" && orders_7d == 0 && revenue_1h == 0.0 && events_24h >= 1
  - name: top_rfm
    when: rfm.r >= 4 && rfm.f >= 2 || rfm.score == "555"
  - name: engine_only
    when: size(top_categories) >= 2 && top_categories.exists(c, c.startsWith("b"))
  - name: analytics
    when: consent.analytics == true
"""
)


def reference(book: SegmentBook, record: dict[str, Any]) -> Decision:
    """The decision the Rust engine alone makes on a record: the oracle."""
    members: set[str] = set()
    decided: list[str] = []
    errors: list[str] = []
    if book.rfm and ("rfm" in record or not record.get("orders")):
        decided += [s.id for s in SEGMENTS]
        if "rfm" in record:
            members.add(record["rfm"]["segment"])
    for segment in book.segments:
        decided.append(segment.name)
        try:
            if segment.condition.run_engine(Values(record)):
                members.add(segment.name)
        except EvaluationError:
            errors.append(segment.name)
    return Decision(frozenset(members), tuple(decided), tuple(errors))


def rendered(profile: Profile, rules: Rules, score: RfmScore | None) -> dict[str, Any]:
    document = render(profile, profile.last_seen, rules)
    return document_fields(
        document,
        profile.churn_risk,
        score and score.fields(),
        next_purchase_view(profile, None, profile.last_seen),
    )


@pytest.fixture(scope="module")
def simulated() -> tuple[list[Profile], RfmSketches]:
    """Profiles as a worker saves them on a simulated shop, with churn risks, and the
    base's sketches."""
    events = list(Shop(customers=150, days=30, seed=5).events())
    messages = [
        Message(
            "t", 0, i, (e.get("customer_id") or e["anonymous_id"]).encode(), json.dumps(e).encode()
        )
        for i, e in enumerate(events)
    ]
    saved: list[Profile] = []
    stages = Stages(Engine(Rules(), Models()))
    processor = ProfilePipeline(MemoryState(), MemoryOutlet(), stages, partitions=1)
    for start in range(0, len(messages), 500):
        result = asyncio.run(processor.run(messages[start : start + 500]))
        # as saved, not as changed later
        saved += [decode(encode(p)) for p in result.work.saved.values()]
    rng = random.Random(5)
    for profile in saved:
        profile.churn_risk = rng.choice([None, rng.random(), 0.7, 0.9])
    summaries = [OrderSummary.of(p) for p in saved]
    sketches = RfmSketches.build(
        (s.last_order_at, s.orders, s.net_revenue) for s in summaries if s is not None
    )
    return saved, sketches


def test_decide_equals_the_engine_on_the_rendered_document_of_simulated_profiles(
    simulated: tuple[list[Profile], RfmSketches],
) -> None:
    profiles, sketches = simulated
    rules = Rules()
    assert len(profiles) > 500
    members: set[str] = set()
    for profile in profiles:
        score = sketches.score_profile(profile)
        wanted = reference(RICH_BOOK, rendered(profile, rules, score))
        assert decide(RICH_BOOK, profile, rules, score) == wanted, profile.id
        record = profile_fields(profile, rules, score and score.fields())
        assert evaluate(RICH_BOOK, record) == wanted
        members |= wanted.members
    # The book is worth testing with: nearly every segment has members.
    assert len(members & {s.name for s in RICH_BOOK.segments}) >= 12, members


def test_every_field_equals_the_rendered_documents_on_simulated_profiles(
    simulated: tuple[list[Profile], RfmSketches],
) -> None:
    profiles, sketches = simulated
    rules = Rules()
    for profile in profiles:
        score = sketches.score_profile(profile)
        rfm = score and score.fields()
        values = FieldValues(profile, rules, rfm)
        fields = {name: values[name] for name in FIELDS if values[name] is not ERROR}
        assert fields == rendered(profile, rules, score), profile.id
        assert all(modelled(value) for value in fields.values())


def test_the_profiles_rfm_score_is_its_order_summarys(
    simulated: tuple[list[Profile], RfmSketches],
) -> None:
    profiles, sketches = simulated
    for profile in profiles:
        summary = OrderSummary.of(profile)
        wanted = (
            None
            if summary is None
            else sketches.score(summary.last_order_at, summary.orders, summary.net_revenue)
        )
        assert sketches.score_profile(profile) == wanted
    assert RfmSketches.empty().score_profile(profiles[-1]) is None


CATEGORIES = st.sampled_from(["books", "fashion", "shoes", "home", "toys"])
TIMES = st.integers(min_value=1_600_000_000_000, max_value=1_800_000_000_000)
COUNTS = st.integers(1, 50)


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    """Profiles with every field drawn, in the ranges the rules leave them in."""
    last_seen = draw(TIMES)
    ago = st.integers(min_value=0, max_value=90 * DAY).map(lambda d: last_seen - d)
    events = draw(st.integers(0, 500))
    orders = draw(st.integers(0, 20))
    money = st.floats(min_value=0, max_value=1e6) | st.integers(0, 10_000)
    cart = {
        product: CartLine(
            category=draw(CATEGORIES),
            price=draw(st.floats(min_value=0, max_value=1e4)),
            price_at=draw(st.sampled_from([-1, last_seen])),
            changes=draw(st.lists(st.tuples(ago, st.integers(-3, 5)), max_size=4)),
        )
        for product in draw(st.sets(st.sampled_from(["P-1", "P-2", "P-3", "P-4"])))
    }
    buckets: dict[int, dict[int, list[float]]] = {}
    for granularity in (5 * 60_000, 3_600_000, DAY):
        for t in draw(st.lists(ago, max_size=6)):
            cell = [float(draw(st.integers(0, 9))), float(draw(st.integers(0, 2))), draw(money)]
            buckets.setdefault(granularity, {})[(t // granularity) * granularity] = cell
    return Profile(
        id="C-1",
        customer_id=draw(st.sampled_from(["C-1", None])),
        first_seen=draw(ago),
        last_seen=last_seen,
        events=events,
        counts=draw(
            st.dictionaries(st.sampled_from(["page_viewed", "product_viewed"]), st.integers(1, 50))
        ),
        channels=draw(st.dictionaries(st.sampled_from(["web", "app"]), COUNTS)),
        orders=orders,
        revenue=draw(money) if orders else 0.0,
        first_order_at=draw(ago) if orders else None,
        last_order_at=draw(ago) if orders else None,
        refunds=draw(st.integers(0, 3)),
        refunded=draw(money),
        sessions_closed=draw(st.integers(0, 5)),
        spans=[(last_seen, last_seen)] * draw(st.integers(0, 3)),
        cart=cart,
        affinity_ref=draw(ago),
        affinity=draw(st.dictionaries(CATEGORIES, st.floats(min_value=0, max_value=1e3))),
        buckets=buckets,
        consent=draw(
            st.dictionaries(
                st.sampled_from(["analytics", "marketing", "personalization"]),
                st.tuples(ago, st.booleans()),
            )
        ),
        churn_risk=draw(st.none() | st.floats(0, 1)),
    )


SCORES = st.none() | st.builds(score_of, *(st.integers(1, 5),) * 3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles(), SCORES)
def test_decide_equals_the_engine_on_the_rendered_document_of_drawn_profiles(
    profile: Profile, score: RfmScore | None
) -> None:
    rules = Rules()
    record = rendered(profile, rules, score)
    values = FieldValues(profile, rules, score and score.fields())
    assert {name: values[name] for name in FIELDS if values[name] is not ERROR} == record
    assert decide(RICH_BOOK, profile, rules, score) == reference(RICH_BOOK, record)
    assert evaluate(RICH_BOOK, record) == reference(RICH_BOOK, record)


NEAR_TIES = st.tuples(
    st.sampled_from([0.0, 1e-7, 1.0, 2.5, 2.5000004, 5.0]), st.integers(-12, 12)
).map(
    lambda t: t[0] + t[1] * 2.5e-7  # neighbours around the rounding margin, and exact ties
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(CATEGORIES, NEAR_TIES | st.floats(0, 1e7), max_size=5),
    st.sampled_from([0, 1, 3_600_000, 14 * DAY, 400 * DAY, 10**9 * DAY]),
)
def test_top_categories_are_affinity_views_first_three_near_ties_too(
    affinity: dict[str, float], decayed_for: int
) -> None:
    profile = Profile(id="C-1", last_seen=10**12, affinity_ref=10**12 - decayed_for)
    profile.affinity = affinity
    rules = Rules()
    wanted = list(affinity_view(profile, profile.last_seen, rules))[:TOP_CATEGORIES]
    assert FieldValues(profile, rules, None)["top_categories"] == wanted


@settings(max_examples=1000, deadline=None)
@given(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.tuples(st.integers(-(10**12), 10**12), st.sampled_from([2, 4, 6]), st.integers(-3, 3)).map(
        # just beside a decimal half: (k + 1/2) / 10**digits, a few ulps either way
        lambda t: (t[0] + 0.5) / 10 ** t[1] + t[2] * math.ulp((t[0] + 0.5) / 10 ** t[1])
    ),
    st.sampled_from([2, 4, 6]),
)
@example(0.125, 2)  # an exact tie: round's half-even decides
@example(2.675, 2)  # 2.67499999... in binary
@example(-1e-9, 4)  # rounds to -0.0
def test_rounded_is_round(x: float, digits: int) -> None:
    got, wanted = rounded(x, digits), round(x, digits)
    assert got == wanted or (math.isnan(got) and math.isnan(wanted))
    assert math.copysign(1.0, got) == math.copysign(1.0, wanted)


def _old_transitions(
    customer_id: str, stored: dict[str, int], members: set[str], decided: tuple[str, ...], at: int
) -> list[Transition]:
    """The loop over every decided segment, as it was written first."""
    out = []
    for segment in decided:
        generation = stored.get(segment, 0)
        was_member = generation % 2 == 1
        if (segment in members) != was_member:
            out.append(Transition(customer_id, segment, not was_member, at, generation + 1))
    return out


SEGMENT_NAMES = st.sampled_from(["a", "b", "c", "champions", "lost", "gone"])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(SEGMENT_NAMES, st.integers(0, 6)),
    st.frozensets(SEGMENT_NAMES),
    st.lists(SEGMENT_NAMES, unique=True).map(tuple),
)
def test_transitions_are_those_of_a_loop_over_every_decided_segment(
    stored: dict[str, int], members: frozenset[str], decided: tuple[str, ...]
) -> None:
    members = frozenset(m for m in members if m in decided)  # decide() never says otherwise
    wanted = _old_transitions("C-1", stored, set(members), decided, 7)
    assert transitions("C-1", stored, members, decided, 7) == wanted
    assert transitions("C-1", stored, list(members), decided, 7) == wanted


def test_scores_are_built_once_and_checked() -> None:
    assert score_of(5, 4, 4) is score_of(5, 4, 4)
    assert score_of(5, 4, 4) == RfmScore(5, 4, 4) and score_of(5, 4, 4).segment.id == "champions"
    with pytest.raises(ValueError, match="m=6 is outside 1-5"):
        score_of(1, 1, 6)
    with pytest.raises(ValueError, match="f=0 is outside 1-5"):
        RfmScore(1, 0, 1)


def test_a_book_keeps_its_names() -> None:
    assert RICH_BOOK.names[: len(SEGMENTS)] == tuple(s.id for s in SEGMENTS)
    assert RICH_BOOK.custom_names == tuple(s.name for s in RICH_BOOK.segments)
    assert RICH_BOOK.names[len(SEGMENTS) :] == RICH_BOOK.custom_names
    off = parse("rfm: false\nsegments: [{name: big, when: orders > 9}]")
    assert off.names == off.custom_names == ("big",)


def test_a_record_holding_what_the_subset_does_not_model_is_decided_by_the_engine() -> None:
    profile = _profile(3, DAY, cart=150.0)
    profile.churn_risk = 0.9
    rfm = {"r": 2**70, "f": 5, "m": 1, "score": "x", "segment": "champions"}  # no int64
    record = profile_fields(profile, Rules(), rfm)
    assert not record.field_values.modelled
    assert evaluate(RICH_BOOK, record) == reference(RICH_BOOK, dict(record))
