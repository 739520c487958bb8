"""The recommender: co-visitation and trending against oracles written from their
definitions, exclusions, reasons, determinism, snapshots, and the seeded simulator check
that it beats popularity."""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations, count, pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract.events import EVENT_ADAPTER
from cdpulse.models.reco import Context, MemoryState, RecoConfig, Recommender
from cdpulse.models.reco.interactions import interactions
from cdpulse.models.reco.state import ALL, LANDMARK_SPAN, decayed, landmark_at
from cdpulse.models.reco_eval import evaluate
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
    # a partner's share is its score over the product's mass: every pair it was counted in
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
    assert state.mass("X") == 5.0  # pruned counts stay in the mass


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


def test_context_from_profile_and_from_its_json_agree() -> None:
    rules = Rules()
    profile = new_profile("C-1")
    for event in shop_events()[:12]:
        if event["customer_id"] == "C-1":
            apply(profile, EVENT_ADAPTER.validate_python(event), rules)
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
