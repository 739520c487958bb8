"""The recommender: co-visitation and trending against oracles written from their
definitions, exclusions, reasons, determinism, snapshots, and the seeded simulator check
that it beats popularity."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from itertools import combinations, count, islice, pairwise
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract import mirror
from cdpulse.contract.events import EVENT_ADAPTER
from cdpulse.contract.partitions import murmur2
from cdpulse.models.reco import Context, MemoryState, RecoConfig, Recommender, Shopper, covisitation
from cdpulse.models.reco.candidates import Candidate
from cdpulse.models.reco.examples import draw
from cdpulse.models.reco.interactions import interactions
from cdpulse.models.reco.leaders import Leaders
from cdpulse.models.reco.ranker import FEATURES, SOURCES, Example, Ranker, prior, vector
from cdpulse.models.reco.shards import ServedState, shard_of
from cdpulse.models.reco.state import ALL, LANDMARK_SPAN, RecoState, decayed, landmark_at
from cdpulse.models.reco_eval import evaluate, item_events
from cdpulse.models.reco_stream import (
    Forget,
    ItemEvent,
    ListThrottle,
    RecoSnapshot,
    due_lists,
    learn_records,
    merge_snapshots,
)
from cdpulse.pipeline.outputs import bundles
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile
from cdpulse.profile.view import render
from cdpulse.simulate import Shop

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
LEVEL = {"product_viewed": 1, "product_added": 2, "order_completed": 3}
TRENDING_WEIGHT = {1: 1.0, 2: 3.0, 3: 5.0}
RELATIONS = (1, 2, 3)
RELATION_WEIGHT = {1: 1.0, 2: 2.0, 3: 2.0}

_ids = count()


def ev(kind: str, t: int, customer: str, *products: str, category: str = "shoes") -> dict[str, Any]:
    """A valid item event: one product viewed or added, or an order of ``products``."""
    if kind == "order_completed":
        properties: dict[str, Any] = {
            "order_id": f"o{next(_ids)}",
            "revenue": 10.0 * len(products),
            "currency": "EUR",
            "items": [
                {"product_id": p, "category": category, "price": 10.0, "quantity": 1}
                for p in products
            ],
        }
    else:
        (product,) = products
        properties = {"product_id": product, "category": category, "price": 10.0}
    return {
        "event_id": f"e{next(_ids)}",
        "type": kind,
        "timestamp": t,
        "customer_id": customer,
        "channel": "web",
        "properties": properties,
    }


def learn_all(recommender: Recommender, events: list[dict[str, Any]]) -> None:
    for event in events:
        recommender.learn_one(event["customer_id"], event)


# --- oracles: plain passes over the events, written from the definitions -------------------


def covisitation_oracle(
    events: list[dict[str, Any]], gap: int, half_life: int, now: int
) -> dict[tuple[str, str], tuple[float, int]]:
    """Per (product, other): the pair's decayed counts weighted by relation and summed,
    and its strongest relation; without window or pruning.

    Per customer, item events closer than ``gap`` form a session. In a session a pair
    {a, b} has relation r once both products reached level >= r; it counts once, at the
    later of the two times they reached it, decayed to ``now``.
    """
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_customer[event["customer_id"]].append(event)
    sessions: list[list[dict[str, Any]]] = []
    for stream in by_customer.values():
        stream.sort(key=lambda e: e["timestamp"])
        for event in stream:
            if (
                not sessions
                or sessions[-1][0]["customer_id"] != event["customer_id"]
                or (event["timestamp"] > sessions[-1][-1]["timestamp"] + gap)
            ):
                sessions.append([])
            sessions[-1].append(event)
    expected: dict[tuple[str, str], float] = defaultdict(float)
    strongest: dict[tuple[str, str], int] = defaultdict(int)
    for session in sessions:
        reached: dict[tuple[str, int], int] = {}  # (product, level) -> first time
        for event in session:
            level = LEVEL[event["type"]]
            for item in interactions(event):
                for r in range(1, level + 1):
                    reached.setdefault((item.product_id, r), event["timestamp"])
        products = sorted({p for p, _ in reached})
        for a, b in combinations(products, 2):
            for r in RELATIONS:
                if (a, r) in reached and (b, r) in reached:
                    t = max(reached[(a, r)], reached[(b, r)])
                    value = RELATION_WEIGHT[r] * 0.5 ** ((now - t) / half_life)
                    for pair in ((a, b), (b, a)):
                        expected[pair] += value
                        strongest[pair] = max(strongest[pair], r)
    return {pair: (value, strongest[pair]) for pair, value in expected.items()}


def covisitation_seen(
    recommender: Recommender, products: list[str], now: int
) -> dict[tuple[str, str], tuple[float, int]]:
    state, config = recommender.state, recommender.config
    landmark = state.landmark()
    assert landmark is not None
    return {
        (p, other): (decayed(stored, now, landmark, config.covisitation_half_life), relation)
        for p in products
        for other, stored, relation in state.partners(p, 10_000)
    }


ITEM_EVENT = st.tuples(
    st.sampled_from(["product_viewed", "product_viewed", "product_added", "order_completed"]),
    st.integers(0, 3 * DAY),  # time offset; sorted below
    st.sampled_from(["C-1", "C-2"]),
    st.lists(st.sampled_from(["P-1", "P-2", "P-3", "P-4", "P-5"]), min_size=1, max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ITEM_EVENT, max_size=25), st.integers(1, 60))
def test_covisitation_counts_and_decay_match_the_oracle(
    raw: list[tuple[str, int, str, list[str]]], gap_minutes: int
) -> None:
    # seconds to days apart: within and across sessions
    raw = sorted(raw, key=lambda r: r[1])
    events = [
        ev(kind, T0 + offset, customer, *(products if kind == "order_completed" else products[:1]))
        for kind, offset, customer, products in raw
    ]
    # a window larger than any session and no pruning: the definition without its bounds
    config = RecoConfig(session_gap=gap_minutes * MINUTE, session_items=100, neighbours=100)
    recommender = Recommender(config)
    learn_all(recommender, events)
    if not events:
        return
    now = T0 + 4 * DAY
    expected = covisitation_oracle(events, config.session_gap, config.covisitation_half_life, now)
    seen = covisitation_seen(recommender, ["P-1", "P-2", "P-3", "P-4", "P-5"], now)
    assert_pairs(seen, expected)
    # a partner's share is its score over the product's mass: its strongest partners'
    # scores summed (here every partner: fewer than ``per_anchor``)
    state = recommender.state
    for product in ["P-1", "P-2", "P-3", "P-4", "P-5"]:
        total = sum(value for (p, _), (value, _) in expected.items() if p == product)
        landmark = state.landmark()
        assert landmark is not None
        mass = decayed(state.mass(product), now, landmark, config.covisitation_half_life)
        assert math.isclose(mass, total, rel_tol=1e-9, abs_tol=1e-300)


def assert_pairs(
    seen: dict[tuple[str, str], tuple[float, int]],
    expected: dict[tuple[str, str], tuple[float, int]],
) -> None:
    assert seen.keys() == {key for key, (value, _) in expected.items() if value > 0}
    for key, (value, relation) in expected.items():
        assert math.isclose(seen[key][0], value, rel_tol=1e-9), key
        assert seen[key][1] == relation, key


def test_a_pair_counts_once_per_relation_per_session() -> None:
    recommender = Recommender()
    learn_all(
        recommender,
        [
            ev("product_viewed", T0, "C-1", "P-1"),
            ev("product_viewed", T0 + MINUTE, "C-1", "P-2"),
            ev("product_viewed", T0 + 2 * MINUTE, "C-1", "P-1"),  # clicked again: no count
            ev("product_added", T0 + 3 * MINUTE, "C-1", "P-1"),  # P-2 only viewed: no count
            ev("order_completed", T0 + 4 * MINUTE, "C-1", "P-1", "P-2"),  # both bought
            ev("product_viewed", T0 + 2 * HOUR, "C-1", "P-2"),  # a new session: P-2 alone
        ],
    )
    now = T0 + 4 * MINUTE
    seen = covisitation_seen(recommender, ["P-1", "P-2"], now)
    viewed = 0.5 ** (3 * MINUTE / (7 * DAY))  # counted at the second view, 3 minutes ago
    # viewed together once (weight 1), added and bought together once each (weights 2, 2)
    pair = (viewed + 2.0 + 2.0, 3)
    assert_pairs(seen, {("P-1", "P-2"): pair, ("P-2", "P-1"): pair})
    assert [(r.product_id, r.reason) for r in recommender.similar("P-1")] == [
        ("P-2", "bought together with P-1")
    ]


def test_the_session_window_pairs_only_the_newest_products() -> None:
    recommender = Recommender(RecoConfig(session_items=3))
    learn_all(
        recommender,
        [ev("product_viewed", T0 + i * MINUTE, "C-1", p) for i, p in enumerate("ABCDE")],
    )
    # E arrived with B, C, D in the window: A had left it
    assert {p for p, _, _ in recommender.state.partners("E", 100)} == {"B", "C", "D"}
    assert [p for p, _, _ in recommender.state.shopper("C-1").session] == ["C", "D", "E"]


def test_pruning_keeps_twice_the_neighbours_and_the_fresh_ones() -> None:
    recommender = Recommender(RecoConfig(neighbours=2, per_anchor=2))
    # a session a day: P-1 with P-2 every time, and with a new partner Q-<day> once
    kept_counts = []
    for day in range(10):
        t = T0 + day * DAY
        for i, product in enumerate(["P-1", "P-2", f"Q-{day}"]):
            recommender.learn_one("C-1", ev("product_viewed", t + i * MINUTE, "C-1", product))
        kept_counts.append(len(recommender.state.partners("P-1", 100)))
    # between 4 (twice the neighbours) and 6 (the slack) before each bulk pruning
    assert max(kept_counts) == 6 and min(kept_counts[4:]) == 4
    kept = [p for p, _, _ in recommender.state.partners("P-1", 100)]
    # a single count decays, so the newest singles outlast the older ones
    assert kept[:4] == ["P-2", "Q-9", "Q-8", "Q-7"]
    assert [r.product_id for r in recommender.similar("P-1", k=2)] == ["P-2", "Q-9"]


def test_pruning_drops_the_weakest_then_the_smallest_id() -> None:
    state = MemoryState(leaders=1, keep=2)  # pruned back to 2 when past 3
    for other, amount in [("B", 1.0), ("A", 1.0), ("C", 2.0), ("D", 1.0)]:
        state.add_pair("X", other, amount, 1)
    # the order of every read: higher score first, on a tie the larger id first
    assert state.partners("X", 10) == [("C", 2.0, 1), ("D", 1.0, 1)]
    assert state.mass("X") == 2.0  # the mass: the leader's score (one leader)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["product_viewed", "product_added", "order_completed"]),
            st.integers(0, 20 * DAY),
            st.sampled_from(["P-1", "P-2", "P-3"]),
            st.sampled_from(["shoes", "books"]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_trending_decays_as_defined(raw: list[tuple[str, int, str, str]]) -> None:
    raw = sorted(raw, key=lambda r: r[1])
    # a product keeps one category, as in a real catalogue
    category_of = {"P-1": "shoes", "P-2": "books", "P-3": "shoes"}
    recommender = Recommender()
    for kind, offset, product, _ in raw:
        event = ev(kind, T0 + offset, "C-1", product, category=category_of[product])
        recommender.learn_one("C-1", event)
    now = T0 + 21 * DAY
    half_life = recommender.config.trending_half_life
    expected: dict[str, float] = defaultdict(float)
    for kind, offset, product, _ in raw:
        expected[product] += TRENDING_WEIGHT[LEVEL[kind]] * 0.5 ** ((now - T0 - offset) / half_life)
    state = recommender.state
    landmark = state.landmark()
    assert landmark is not None
    for product, value in expected.items():
        (stored,) = state.popularity([product])
        assert math.isclose(decayed(stored, now, landmark, half_life), value, rel_tol=1e-9)
    total = sum(expected.values())
    assert math.isclose(
        decayed(state.total_popularity(ALL), now, landmark, half_life), total, rel_tol=1e-9
    )
    popular = recommender.popular("C-9", k=3)
    assert {r.product_id for r in popular} == expected.keys()
    values = [expected[r.product_id] for r in popular]
    assert all(a >= b * (1 - 1e-9) for a, b in pairwise(values))
    for r in popular:
        assert math.isclose(r.score, expected[r.product_id] / total, abs_tol=1e-6)


def test_rebasing_keeps_decayed_scores_and_stays_finite() -> None:
    half_life = 1_000
    config = RecoConfig(covisitation_half_life=half_life, trending_half_life=half_life)
    recommender = Recommender(config)
    t1 = T0 + (3 * LANDMARK_SPAN + 10) * half_life  # three grid cells later
    learn_all(
        recommender,
        [
            ev("product_viewed", T0, "C-1", "P-1"),
            ev("product_viewed", T0 + 10, "C-1", "P-2"),
            ev("product_viewed", t1, "C-1", "P-1"),
            ev("product_viewed", t1 + 10, "C-1", "P-3"),
        ],
    )
    landmark = recommender.state.landmark()
    assert landmark == t1 - t1 % (LANDMARK_SPAN * half_life) == landmark_at(t1, half_life)
    seen = covisitation_seen(recommender, ["P-1"], t1 + 10)
    assert math.isclose(seen[("P-1", "P-3")][0], 1.0)
    assert seen[("P-1", "P-2")][0] < 1e-50
    (stored,) = recommender.state.popularity(["P-1"])
    assert math.isfinite(stored)
    expected = 1.0 + 0.5 ** ((t1 - T0) / half_life)
    assert math.isclose(decayed(stored, t1, landmark, half_life), expected)


# --- recommending ---------------------------------------------------------------------------


def shop_events() -> list[dict[str, Any]]:
    """A small shop: shoppers who view, add and buy across two categories."""
    events = []
    t = T0
    for day in range(3):
        for i in range(6):
            customer = f"C-{i}"
            t = T0 + day * DAY + i * HOUR
            pairs = [("P-1", "P-2"), ("P-3", "P-4"), ("P-1", "P-3")][i % 3]
            for product in pairs:
                events.append(ev("product_viewed", t, customer, product))
                t += MINUTE
            events.append(ev("product_added", t, customer, pairs[0]))
            events.append(ev("product_added", t + MINUTE, customer, pairs[1]))
            events.append(ev("order_completed", t + 2 * MINUTE, customer, *pairs))
            events.append(ev("product_viewed", t + 3 * MINUTE, customer, "B-1", category="books"))
    return events


def test_bought_products_are_left_out_unless_repeatable() -> None:
    events = shop_events()
    plain = Recommender()
    learn_all(plain, events)
    bought = {"P-1", "P-2"}  # C-0 bought P-1 and P-2
    assert not bought & {r.product_id for r in plain.recommend("C-0", k=50)}
    assert not bought & {r.product_id for r in plain.popular("C-0", k=50)}
    assert bought <= {r.product_id for r in plain.recommend("C-1", k=50)}  # C-1 did not
    repeatable = Recommender(RecoConfig(repeatable={"P-1"}))
    learn_all(repeatable, events)
    products = {r.product_id for r in repeatable.recommend("C-0", k=50)}
    assert "P-1" in products
    assert "P-2" not in products


def test_seen_slots_limit_products_viewed_recently_or_in_the_cart() -> None:
    events = shop_events()
    context = Context(affinity={"shoes": 1.0}, recently_viewed=("P-3", "P-4"), cart=("P-1",))
    for slots, expected in ((None, 3), (1, 1), (0, 0)):
        recommender = Recommender(RecoConfig(seen_slots=slots))
        learn_all(recommender, events)
        recs = recommender.recommend("C-new", context, k=10)
        assert len({r.product_id for r in recs} & {"P-1", "P-3", "P-4"}) == expected
        assert len(recs) == 5 - 3 + expected  # every other known product still comes


def test_every_recommendation_has_a_score_and_a_reason() -> None:
    recommender = Recommender()
    learn_all(recommender, shop_events())
    newcomer = recommender.recommend("C-new")
    assert newcomer
    assert {r.reason for r in newcomer} == {"trending now"}
    # a shopper who looks at P-1 now: its partners, in plain words
    recommender.learn_one("C-new", ev("product_viewed", T0 + 4 * DAY, "C-new", "P-1"))
    context = Context(affinity={"books": 1.0}, recently_viewed=("P-1",))
    recs = recommender.recommend("C-new", context, k=5)
    reasons = {r.product_id: r.reason for r in recs}
    assert reasons["P-2"] == "bought together with P-1"
    assert reasons["B-1"] in {"popular in books", "viewed together with P-1"}
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert all(r.reason for r in recs)


def pool_by_definition(
    state: RecoState, config: RecoConfig, customer: str, context: Context
) -> list[Candidate]:
    """The candidates as their definition reads (``candidates``' module docstring), each
    with every feature: co-visitation partners of the anchors (each anchor weighted
    1/(rank + 1), the anchor that contributed most kept, the newest on a tie), the top
    products of the strongest categories, trending, recently viewed, the cart."""
    shopper = state.shopper(customer)
    session = [p for p, _, _ in reversed(shopper.session)]
    anchors = list(dict.fromkeys([*session, *context.recently_viewed, *context.cart]))
    found: dict[str, Candidate] = {}
    strongest: dict[str, float] = {}
    for rank, anchor in enumerate(anchors[: config.anchors]):
        weight = 1.0 / (rank + 1)
        partners = covisitation.scores(state, anchor, config.per_anchor)
        for other, (share, relation) in partners.items():
            c = found.setdefault(other, Candidate(other))
            contribution = weight * share
            c.covisitation += contribution
            if contribution > strongest.get(other, 0.0):
                strongest[other] = contribution
                c.anchor, c.relation = anchor, relation
    by_affinity = sorted(context.affinity.items(), key=lambda kv: (-kv[1], kv[0]))
    for category, _ in by_affinity[: config.categories]:
        for product, _ in state.top_products(category, config.per_category):
            found.setdefault(product, Candidate(product))
    for product, _ in state.top_products(ALL, config.trending):
        found.setdefault(product, Candidate(product))
    for rank, product in enumerate(context.recently_viewed[: config.recently_viewed]):
        found.setdefault(product, Candidate(product)).viewed = 1.0 / (rank + 1)
    for product in context.cart:
        found.setdefault(product, Candidate(product)).in_cart = True
    pool = list(found.values())
    # A published snapshot's view computes a product's shares once (``remember``): what a
    # list of a learner's view over its learning shard reads is the first computed.
    rows = state.remembered_rows() if isinstance(state, ServedState) else None
    rows = {} if rows is None else rows
    total_affinity = sum(context.affinity.values())
    for c in pool:
        if c.product_id not in rows:
            rows[c.product_id] = row_by_definition(state, c.product_id)
        c.category, c.category_share, c.popularity = rows[c.product_id]
        if c.category is not None and total_affinity > 0:
            c.affinity = context.affinity.get(c.category, 0.0) / total_affinity
    return pool


def row_by_definition(state: RecoState, product: str) -> tuple[str | None, float, float]:
    """A product's category, its share of its category's popularity and of all."""
    [category] = state.categories([product])
    [popularity] = state.popularity([product])
    total = state.total_popularity(ALL)
    overall = popularity / total if total > 0 else 0.0
    if category is None:
        return None, 0.0, overall
    in_category = state.total_popularity(category)
    return category, popularity / in_category if in_category > 0 else 0.0, overall


def list_by_definition(
    recommender: Recommender, customer: str, context: Context, k: int
) -> list[tuple[str, float, str]]:
    """A list as its definition reads, candidate by candidate: the oracle. Every candidate
    the customer may buy scored from its feature vector, best first (ties by product), at
    most ``seen_slots`` of them viewed or in the cart, each with the reason of the source
    that lifted it most above an average candidate (ties by name)."""
    config = recommender.config
    shopper = recommender.state.shopper(customer)
    ranker = recommender.ranker.folded()
    scored = []
    for c in pool_by_definition(recommender.state, config, customer, context):
        if c.product_id in shopper.bought and c.product_id not in config.repeatable:
            continue
        scored.append((ranker.scores([vector(c)])[0], c.product_id, c))
    scored.sort(key=lambda s: (-s[0], s[1]))
    out: list[tuple[str, float, str]] = []
    seen_slots = config.seen_slots
    for score, product, c in scored:
        if len(out) == k:
            break
        if (c.viewed > 0 or c.in_cart) and seen_slots is not None:
            if seen_slots <= 0:
                continue
            seen_slots -= 1
        x = vector(c)
        lift: dict[str, float] = {}
        if not ranker.learned:
            lift = {"covisitation": x[0], "category": x[1], "trending": x[4], "viewed": x[5]}
        else:
            for source, w, value, mean in zip(
                SOURCES, ranker.weights, x, ranker.means, strict=True
            ):
                lift[source] = lift.get(source, 0.0) + w * (value - mean)
        reason = "trending now"
        for source in sorted(lift, key=lambda s: (-lift[s], s)):
            if source == "covisitation" and c.anchor is not None:
                reason = f"{TOGETHER[c.relation]} {c.anchor}"
            elif source == "viewed" and c.viewed > 0:
                reason = "you viewed it recently"
            elif source == "cart" and c.in_cart:
                reason = "in your cart"
            elif source == "category" and c.category is not None and c.affinity > 0:
                reason = f"popular in {c.category}"
            else:
                continue
            break
        out.append((product, round(score, 6), reason))
    return out


TOGETHER = {1: "viewed together with", 2: "added to cart with", 3: "bought together with"}


@pytest.mark.parametrize("seen_slots", [None, 2])
@pytest.mark.parametrize("learned", [False, True])
def test_lists_are_the_pool_ranked_as_defined(seen_slots: int | None, learned: bool) -> None:
    config = RecoConfig(seen_slots=seen_slots, example_share=1.0 if learned else 0.0)
    recommender = Recommender(config)
    records = list(item_events(Shop(customers=150, days=14, seed=5).events(), consent=True))
    history, asked = records[:-300], records[-300:]
    for record in history:
        recommender.learn_one(record.customer_id, record.items, record.context)
    assert (recommender.ranker.learned > 0) is learned
    served = Recommender.merge([recommender])
    for model in (recommender, served):
        for record in asked:
            got = model.recommend(record.customer_id, record.context, k=10)
            expected = list_by_definition(model, record.customer_id, record.context, 10)
            assert [(r.product_id, r.score, r.reason) for r in got] == expected


def test_lists_of_a_view_over_a_learning_shard_are_as_defined() -> None:
    """The learner's lists: one remembering view over its live shard, while it learns on
    (``app/learner.py``), gives the lists the definition gives on a twin view."""
    config = RecoConfig(example_share=0.5)
    ours, twin = Recommender(config), Recommender(config)
    records = list(item_events(Shop(customers=150, days=14, seed=6).events(), consent=True))
    views = []
    for i, record in enumerate(records):
        if i % 500 == 0:
            views = [Recommender.merge([ours]), Recommender.merge([twin])]
        for model in (ours, twin):
            model.learn_one(record.customer_id, record.items, record.context)
        if i % 3 == 0:
            got = views[0].recommend(record.customer_id, record.context, k=10)
            expected = list_by_definition(views[1], record.customer_id, record.context, 10)
            assert [(r.product_id, r.score, r.reason) for r in got] == expected


def test_context_from_profile_and_from_its_json_agree() -> None:
    rules = Rules()
    profile = new_profile("C-1")
    for event in shop_events()[:12]:
        if event["customer_id"] == "C-1":
            apply(profile, mirror.from_dict(event), rules)
    direct = Context.from_profile(profile)
    viewed = Context.from_view(render(profile, profile.last_seen, rules))
    assert direct.recently_viewed == viewed.recently_viewed
    assert direct.cart == viewed.cart
    total = sum(direct.affinity.values())
    total_view = sum(viewed.affinity.values())
    for category, score in direct.affinity.items():
        assert math.isclose(score / total, viewed.affinity[category] / total_view, rel_tol=1e-5)


def test_the_same_events_give_the_same_recommendations_and_snapshots_round_trip() -> None:
    events = shop_events()
    config = RecoConfig(example_share=1.0)  # every event teaches the ranker
    first, second = Recommender(config), Recommender(config)
    learn_all(first, events[:-5])
    learn_all(second, events[:-5])
    context = Context(affinity={"shoes": 2.0, "books": 1.0}, recently_viewed=("P-3",))
    assert first.recommend("C-1", context) == second.recommend("C-1", context)
    assert first.model_version == second.model_version
    restored = Recommender.restore(first.snapshot())
    assert restored.recommend("C-1", context) == first.recommend("C-1", context)
    assert restored.model_version == first.model_version
    # and it learns on exactly as the original does
    learn_all(restored, events[-5:])
    learn_all(first, events[-5:])
    assert restored.recommend("C-1", context) == first.recommend("C-1", context)
    assert restored.model_version == first.model_version != second.model_version


def test_dicts_and_validated_events_are_learned_alike() -> None:
    events = shop_events()
    from_dicts, from_models = Recommender(), Recommender()
    learn_all(from_dicts, events)
    for event in events:
        from_models.learn_one(event["customer_id"], EVENT_ADAPTER.validate_python(event))
    assert from_dicts.recommend("C-2") == from_models.recommend("C-2")
    page = {**events[0], "type": "page_viewed", "properties": {"url": "https://shop.example/"}}
    assert from_dicts.observe("C-2", page) == []


def test_beats_popularity_on_the_seeded_simulator() -> None:
    result = evaluate(Shop(customers=80, days=21, seed=1).events(), k=10)
    overall = result["all"]
    assert overall["events"] > 1000
    assert overall["hit"] > overall["popularity_hit"]
    assert overall["ndcg"] > overall["popularity_ndcg"]


# --- reading events without pydantic -------------------------------------------------------


class _Product(msgspec.Struct):
    product_id: str
    category: str


class _Line(msgspec.Struct):
    product_id: str
    category: str
    quantity: int = 1


class _Order(msgspec.Struct):
    items: list[_Line]


class _Struct(msgspec.Struct):
    """The shape of the worker's event structs: ``type``, ``at`` and ``properties``."""

    type: str
    at: int
    properties: Any


@pytest.mark.parametrize("kind", ["product_viewed", "product_added", "order_completed"])
def test_structs_models_and_dicts_give_the_same_interactions(kind: str) -> None:
    event = ev(
        kind, T0 + 1234, "C-1", *(["P-1", "P-2", "P-1"] if kind == "order_completed" else ["P-1"])
    )
    expected = interactions(EVENT_ADAPTER.validate_python(event))  # the contract's model
    if kind == "order_completed":
        lines = [_Line(i["product_id"], i["category"]) for i in event["properties"]["items"]]
        struct = _Struct(kind, T0 + 1234, _Order(lines))
    else:
        struct = _Struct(kind, T0 + 1234, _Product("P-1", "shoes"))
    text = {**event, "timestamp": "2026-01-01T00:00:01.234+00:00"}  # RFC 3339, same instant
    assert interactions(event) == interactions(struct) == interactions(text) == expected
    assert [(i.product_id, i.level, i.time) for i in expected] == [
        (p, LEVEL[kind], T0 + 1234)
        for p in dict.fromkeys(["P-1", "P-2"] if kind == "order_completed" else ["P-1"])
    ]


@pytest.mark.parametrize(
    "broken",
    [
        {"properties": {"category": "shoes"}},  # no product
        {"properties": {"product_id": "", "category": "shoes"}},  # empty id
        {"timestamp": "2026-01-01T00:00:00"},  # no offset
        {"timestamp": True},
        {"timestamp": -5},
        {"properties": None},
    ],
)
def test_a_malformed_item_dict_raises_value_error_naming_the_event(broken: dict[str, Any]) -> None:
    event = {**ev("product_viewed", T0, "C-1", "P-1"), **broken}
    with pytest.raises(ValueError, match=event["event_id"]):
        interactions(event)
    assert interactions({"type": "page_viewed", "timestamp": "junk"}) == []


# --- the learner's records ------------------------------------------------------------------


def test_item_events_round_trip_and_learn_as_the_events_do() -> None:
    events = shop_events()
    rules = Rules()
    profiles: dict[str, Any] = {}
    records = []
    for event in events:
        profile = profiles.setdefault(event["customer_id"], new_profile(event["customer_id"]))
        item = ItemEvent.of(event["customer_id"], event, profile, ingested=1.5)
        assert ItemEvent.from_json(item.to_json()) == item
        records.append(item.to_json())
        apply(profile, mirror.from_dict(event), rules)
    from_events, from_records = Recommender(), Recommender()
    for event, raw in zip(events, records, strict=True):
        item = ItemEvent.from_json(raw)
        from_events.learn_one(event["customer_id"], event, item.context)
    learned = learn_records(from_records, enumerate(records))
    assert len(learned.items) == len(events) and not learned.malformed
    assert_same_learning(from_events, from_records, ["P-1", "P-2", "P-3", "P-4", "B-1"])


def assert_same_learning(a: Recommender, b: Recommender, products: list[str]) -> None:
    for product in products:
        assert a.state.partners(product, 100) == b.state.partners(product, 100)
        assert a.state.mass(product) == b.state.mass(product)
    assert a.state.popularity(products) == b.state.popularity(products)
    assert a.state.top_products(ALL, 100) == b.state.top_products(ALL, 100)
    for customer in [f"C-{i}" for i in range(6)]:
        assert a.state.shopper(customer) == b.state.shopper(customer)
    assert a.ranker.folded() == b.ranker.folded()
    assert a.model_version == b.model_version


def test_learn_records_skips_what_it_cannot_read_and_forgets_on_request() -> None:
    events = shop_events()
    good = [
        ItemEvent.of(e["customer_id"], e, new_profile(e["customer_id"])).to_json() for e in events
    ]
    item = msgspec.json.decode(good[0])
    hostile = [
        b"",
        b"not json",
        b"[]",
        b'{"forget": ""}',
        msgspec.json.encode({**item, "items": []}),
        msgspec.json.encode({**item, "items": [["P-1", "shoes", 7, T0]]}),  # no level 7
        msgspec.json.encode({**item, "at": "yesterday"}),
        msgspec.json.encode({**item, "customer_id": None}),
    ]
    recommender = Recommender()
    records = list(enumerate([*hostile, *good, Forget("C-0").to_json()]))
    learned = learn_records(recommender, records)
    assert learned.malformed == list(range(len(hostile)))
    assert len(learned.items) == len(good) and learned.forgotten == ["C-0"]
    assert recommender.state.shopper("C-0") == Shopper()
    assert recommender.state.shopper("C-1").session


def test_bundles_of_records_learn_as_the_records_one_by_one() -> None:
    events = shop_events()
    records = [
        ItemEvent.of(e["customer_id"], e, new_profile(e["customer_id"])).to_json() for e in events
    ]
    records.insert(len(records) // 2, Forget("C-1").to_json())
    singles, bundled = Recommender(), Recommender()
    one_by_one = learn_records(singles, enumerate(records))
    # bundles small enough that the records span several, as a worker's outlet sends them
    packed = bundles(records, limit=600)
    assert len(packed) > 2
    together = learn_records(bundled, enumerate(packed))
    assert together.items == one_by_one.items
    assert together.forgotten == one_by_one.forgotten == ["C-1"]
    assert not together.malformed
    assert_same_learning(singles, bundled, ["P-1", "P-2", "P-3", "P-4", "B-1"])


@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=4), max_size=40),
    st.integers(min_value=2, max_value=400),
)
def test_bundles_keep_every_value_in_order_within_the_limit(
    documents: list[dict[str, int]], limit: int
) -> None:
    values = [msgspec.json.encode(d) for d in documents]
    packed = bundles(values, limit=limit)
    assert [v for b in packed for v in msgspec.json.decode(b)] == documents
    assert all(len(b) <= limit or len(msgspec.json.decode(b)) == 1 for b in packed)


def test_a_bundle_with_an_unreadable_record_learns_the_rest_and_reports_its_offset() -> None:
    events = shop_events()
    good = [
        ItemEvent.of(e["customer_id"], e, new_profile(e["customer_id"])).to_json() for e in events
    ]
    broken = b"[" + b",".join([good[0], b'{"forget": 7}', *good[1:]]) + b"]"
    learned = learn_records(Recommender(), [(0, b"[]"), (1, b"[1,"), (2, broken)])
    assert learned.malformed == [0, 1, 2]
    assert len(learned.items) == len(good)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300))
def test_learn_records_never_raises_on_bytes(raw: bytes) -> None:
    learned = learn_records(Recommender(), [(0, raw)])
    assert len(learned.items) + len(learned.forgotten) + len(learned.malformed) == 1


# --- leaders, the ranker, the draw ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.tuples(st.integers(0, 12), st.sampled_from([0.5, 1.0, 2.0])), max_size=120),
)
def test_leaders_are_the_best_of_the_map_after_every_increment(
    size: int, increments: list[tuple[int, float]]
) -> None:
    scores: dict[str, float] = {}
    top = Leaders(size)
    for member, amount in increments:
        key = f"m{member:02d}"
        scores[key] = scores.get(key, 0.0) + amount
        top.offer(scores, key, amount)
        # the definition: a plain sort by (score, id), best first
        expected = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:size]
        assert top.ranked(scores) == expected
        assert math.isclose(top.total, sum(score for _, score in expected))


def test_the_ranker_learns_as_rivers_pipeline() -> None:
    from river import linear_model, optim, preprocessing

    rng = random.Random(7)
    config = RecoConfig(learning_rate=0.05)
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(config.learning_rate)
    )
    ranker = Ranker(config)
    for _ in range(2_000):
        x = tuple(rng.random() if rng.random() < 0.7 else 0.0 for _ in FEATURES)
        y, weight = rng.random() < 0.3, rng.choice([1.0, 2.0, 3.0])
        river.learn_one(dict(zip(FEATURES, x, strict=True)), y, w=weight)
        ranker.learn_one(Example(x, y, weight))
    regression, scaler = river["LogisticRegression"], river["StandardScaler"]
    assert ranker.weights == [regression.weights.get(name, 0.0) for name in FEATURES]
    assert ranker.intercept == regression.intercept
    assert ranker.means == [scaler.means[name] for name in FEATURES]
    # and the folded weights score as the pipeline's log-odds (plus the prior)
    x = tuple(rng.random() for _ in FEATURES)
    p = river.predict_proba_one(dict(zip(FEATURES, x, strict=True)))[True]
    (score,) = ranker.folded().scores([x])
    assert math.isclose(score - prior(x), math.log(p / (1 - p)), rel_tol=1e-9)


def test_draws_are_uniform_over_the_union_and_deterministic() -> None:
    sources = [["a", "b", "c"], ["b", "c", "d"], ["c", "e"]]
    counts: dict[str, int] = defaultdict(int)
    for seed in range(6_000):
        drawn = draw(sources, 2, lambda p: p != "e", seed)
        assert len(drawn) == len(set(drawn)) == 2 and "e" not in drawn
        assert drawn == draw(sources, 2, lambda p: p != "e", seed)
        for p in drawn:
            counts[p] += 1
    # 4 eligible products, 2 drawn each time: each in half the draws (c is in 3 sources)
    for p in "abcd":
        assert abs(counts[p] / 6_000 - 0.5) < 0.03, counts
    # fewer eligible than asked: every one of them
    assert sorted(draw(sources, 9, lambda p: True, 1)) == ["a", "b", "c", "d", "e"]


# --- shards ---------------------------------------------------------------------------------


def test_shard_of_is_kafkas_default_partitioner() -> None:
    from kafka.partitioner.default import murmur2 as kafka_murmur2

    rng = random.Random(3)
    for _ in range(500):
        key = "".join(rng.choice("abcdef0123456789:-") for _ in range(rng.randint(0, 70)))
        assert murmur2(key.encode()) == kafka_murmur2(key.encode())
        for shards in (1, 2, 3, 12):
            assert shard_of(key, shards) == (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % shards


def learn_sharded(events: list[dict[str, Any]], shards: int) -> list[Recommender]:
    learners = [Recommender() for _ in range(shards)]
    for event in events:
        learners[shard_of(event["customer_id"], shards)].learn_one(event["customer_id"], event)
    return learners


def test_one_shard_merged_serves_exactly_as_the_learner() -> None:
    events = shop_events()
    (learner,) = learn_sharded(events, 1)
    served = Recommender.merge([learner])
    context = Context(affinity={"shoes": 2.0, "books": 1.0}, recently_viewed=("P-3",))
    for customer in ["C-0", "C-1", "C-4", "C-new"]:
        assert served.recommend(customer, context) == learner.recommend(customer, context)
        assert served.popular(customer) == learner.popular(customer)
    assert served.similar("P-1") == learner.similar("P-1")
    assert served.model_version == learner.model_version
    snapshot = RecoSnapshot(3, learner, 41)
    assert merge_snapshots([snapshot]).version == 3 and snapshot.served().offset == 41
    with pytest.raises(TypeError):
        served.learn_one("C-1", events[0])


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_merged_count_every_event_once(shards: int) -> None:
    events = shop_events()
    (single,) = learn_sharded(events, 1)
    learners = learn_sharded(events, shards)
    assert sum(1 for s in learners if isinstance(s.state, MemoryState) and s.state.landmark()) > 1
    merged = Recommender.merge(learners).state
    # forward-decayed sums with a shared landmark add exactly (up to rounding)
    assert merged.landmark() == single.state.landmark()
    products = ["P-1", "P-2", "P-3", "P-4", "B-1"]
    for product in products:
        # (fewer partners than leaders here: the mass is every partner's score)
        assert math.isclose(merged.mass(product), single.state.mass(product), rel_tol=1e-12)
        mine = {o: (s, r) for o, s, r in single.state.partners(product, 100)}
        theirs = {o: (s, r) for o, s, r in merged.partners(product, 100)}
        assert mine.keys() == theirs.keys()
        for other, (score, relation) in mine.items():
            assert math.isclose(theirs[other][0], score, rel_tol=1e-12)
            assert theirs[other][1] == relation
    for a, b in zip(merged.popularity(products), single.state.popularity(products), strict=True):
        assert math.isclose(a, b, rel_tol=1e-12)
    assert math.isclose(merged.total_popularity(ALL), single.state.total_popularity(ALL))
    assert [p for p, _ in merged.top_products(ALL, 5)] == [
        p for p, _ in single.state.top_products(ALL, 5)
    ]
    # each customer's shopper comes from their own shard
    for customer in [f"C-{i}" for i in range(6)]:
        assert merged.shopper(customer) == single.state.shopper(customer)


def test_shards_at_different_landmarks_are_rescaled() -> None:
    half_life = 1_000
    config = RecoConfig(covisitation_half_life=half_life, trending_half_life=half_life)
    early, late = Recommender(config), Recommender(config)
    span = LANDMARK_SPAN * half_life
    early.learn_one("C-1", ev("product_viewed", T0, "C-1", "P-1"))
    late.learn_one("C-2", ev("product_viewed", T0 + span, "C-2", "P-1"))
    merged = Recommender.merge([early, late]).state
    assert early.state.landmark() != late.state.landmark() == merged.landmark()
    landmark = merged.landmark()
    assert landmark is not None
    (stored,) = merged.popularity(["P-1"])
    expected = 1.0 + 0.5 ** (span / half_life)  # at T0 + span: the early view decayed
    assert math.isclose(decayed(stored, T0 + span, landmark, half_life), expected)


def test_sharded_evaluation_with_one_shard_is_the_single_learner() -> None:
    events = list(Shop(customers=40, days=7, seed=3).events())
    one = evaluate(events, shards=1)
    assert one == evaluate(events)
    # the single learner, by hand: recommend, then learn, per item event
    learner = Recommender()
    hits = n = 0
    for item in item_events(events):
        relevant = {i.product_id for i in item.items}
        ours = [r.product_id for r in learner.recommend(item.customer_id, item.context)]
        hits += bool(relevant & set(ours))
        n += 1
        learner.learn_one(item.customer_id, item.items, item.context)
    assert one["all"]["events"] == n and one["all"]["hit"] == hits / n
    two = evaluate(events, shards=2)
    assert two["all"]["events"] == n and two["all"]["hit"] > two["all"]["popularity_hit"]


# --- lists ----------------------------------------------------------------------------------


def test_due_lists_one_per_customer_per_interval_caused_by_the_newest_event() -> None:
    events = shop_events()
    learner = Recommender()
    records = [
        ItemEvent.of(e["customer_id"], e, new_profile(e["customer_id"]), ingested=float(i))
        for i, e in enumerate(events)
    ]
    throttle = ListThrottle(HOUR)
    first_day = [r for r in records if r.at < T0 + DAY]
    learned = learn_records(learner, enumerate(r.to_json() for r in first_day))
    snapshot = RecoSnapshot(1, Recommender.merge([learner]), len(first_day))
    names = {f"C-{i}": f"customer {i}" for i in range(5)}  # C-5: erased, no name
    lists = due_lists(snapshot, learned.items, throttle, names.get)
    newest = {r.customer_id: r for r in first_day}
    assert [d.customer_id for d in lists] == [names[c] for c in newest if c in names]
    for due in lists:
        pseudonym = next(c for c, name in names.items() if name == due.customer_id)
        cause = newest[pseudonym]
        assert due.document.caused_by == cause.event_id and due.ingested == cause.ingested
        wanted = learner.recommend(pseudonym, cause.context)
        assert [(i.product_id, i.reason) for i in due.document.items] == [
            (r.product_id, r.reason) for r in wanted
        ]
        assert due.document.model_version == f"{learner.model_version}.s1"
    # within the hour (event time) nobody is due again
    assert due_lists(snapshot, learned.items, throttle, names.get) == []


def test_the_cart_of_a_context_is_the_profiles_open_cart() -> None:
    """``Context.from_profile`` reads the cart without rendering it: the same products as
    the profile document's cart, over a simulated shop's customers."""
    from cdpulse.profile.view import cart_view

    rules = Rules()
    profiles: dict[str, Profile] = {}
    for event in islice(Shop(200, 20, 7).events(), 20_000):
        key = event.get("customer_id") or event["anonymous_id"]
        profile = profiles.setdefault(key, Profile(id=key))
        apply(profile, mirror.from_dict(event), rules)
    carts = 0
    for profile in profiles.values():
        expected = tuple(item["product_id"] for item in cart_view(profile)["items"])
        assert Context.from_profile(profile).cart == expected
        carts += bool(expected)
    assert carts > 10  # open carts were compared, not only empty ones
