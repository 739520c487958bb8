"""Trigger rules as pure logic: timing in event time, consent, caps, cooldowns, holdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract.mirror import Event, from_dict
from cdpulse.offers.choice import OfferChoice
from cdpulse.profile.model import Profile
from cdpulse.profile.watch import Watch
from cdpulse.triggers.caps import DAY
from cdpulse.triggers.decide import Decision, decide, in_holdout, next_due
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.rules import HOUR, MINUTE, TriggerConfig, load_rules
from cdpulse.triggers.situations import Transition, entered, observe, scored

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GAP = 30 * MINUTE
GRANTED = {"marketing": (T0 - HOUR, True)}

CONFIG = TriggerConfig.model_validate(
    {
        "caps": {"per_day": 100, "per_week": 100},
        "rules": [
            {"name": "cart", "kind": "cart_abandoned", "after_minutes": 30, "cooldown_hours": 0},
            {"name": "intent", "kind": "high_intent", "views": 3, "cooldown_hours": 0},
            {"name": "churn", "kind": "churn_risk", "threshold": 0.7, "cooldown_hours": 0},
            {"name": "winback", "kind": "win_back", "segment": "At risk", "cooldown_hours": 0},
            {"name": "xsell", "kind": "cross_sell", "cooldown_hours": 0, "marketing": False},
        ],
    }
)


def event(kind: str, at: int, n: int, **properties: Any) -> Event:
    return from_dict(
        {
            "event_id": f"e{n}",
            "type": kind,
            "timestamp": at,
            "customer_id": "C-1",
            "channel": "web",
            "properties": properties,
        }
    )


def add(at: int, n: int, product: str = "P-1", quantity: int = 1) -> Event:
    return event(
        "product_added", at, n, product_id=product, category="c", price=9.5, quantity=quantity
    )


def view(at: int, n: int, product: str = "P-1") -> Event:
    return event("product_viewed", at, n, product_id=product, category="c", price=9.5)


def order(at: int, n: int, order_id: str = "O-1") -> Event:
    item = {"product_id": "P-1", "category": "c", "price": 9.5, "quantity": 1}
    return event(
        "order_completed", at, n, order_id=order_id, revenue=9.5, currency="EUR", items=[item]
    )


def feed(events: list[Event], config: TriggerConfig = CONFIG) -> Watch:
    watch = Watch()
    for e in events:
        observe(watch, e, e.at, config, GAP)
    return watch


def offer(rule: str, offers: list[str], trigger: str) -> OfferChoice | None:
    return None


def run(
    watch: Watch,
    watermark: int,
    consent: dict[str, tuple[int, bool]] = GRANTED,
    config: TriggerConfig = CONFIG,
) -> list[Decision]:
    return decide(watch, "C-1", consent, watermark, config, offer)[0]


# --- cart abandonment in event time ----------------------------------------------------------


def test_a_cart_fires_at_its_deadline_without_any_further_event() -> None:
    watch = feed([add(T0, 1)])
    assert next_due(watch, CONFIG) == T0 + 30 * MINUTE
    assert run(watch, T0 + 30 * MINUTE - 1) == []
    [decision] = run(watch, T0 + 30 * MINUTE)
    assert (decision.outcome, decision.pending.key, decision.pending.at) == (
        "fired",
        "e1",
        T0 + 30 * MINUTE,
    )
    assert decision.trigger_id == "cart:C-1:e1"
    assert decision.pending.products == ["P-1"]
    assert run(watch, T0 + DAY) == []  # decided once
    assert next_due(watch, CONFIG) is not None  # its attribution window is still open


def test_each_add_moves_the_deadline() -> None:
    watch = feed([add(T0, 1), add(T0 + 20 * MINUTE, 2, "P-2")])
    assert run(watch, T0 + 49 * MINUTE) == []
    [decision] = run(watch, T0 + 50 * MINUTE)
    assert decision.pending.products == ["P-1", "P-2"]


@pytest.mark.parametrize(
    ("closer", "fires"),
    [("checkout_started", False), ("order_completed", False), (None, True)],
)
def test_a_checkout_or_order_before_the_deadline_closes_the_cart(
    closer: str | None, fires: bool
) -> None:
    events = [add(T0, 1)]
    if closer == "checkout_started":
        events.append(event("checkout_started", T0 + 29 * MINUTE, 2))
    elif closer == "order_completed":
        events.append(order(T0 + 29 * MINUTE, 2))
    fired = [d for d in run(feed(events), T0 + DAY) if d.pending.rule == "cart"]
    assert bool(fired) is fires


def test_a_checkout_after_the_deadline_is_too_late() -> None:
    watch = feed([add(T0, 1), event("checkout_started", T0 + 31 * MINUTE, 2)])
    assert [d.pending.rule for d in run(watch, T0 + DAY)] == ["cart"]


def test_an_order_arriving_late_on_its_own_topic_still_closes_the_cart() -> None:
    # The add after the order arrives first; the order (transactions) lags behind.
    watch = feed([add(T0, 1), add(T0 + 40 * MINUTE, 3), order(T0 + 10 * MINUTE, 2)])
    carts = [d for d in run(watch, T0 + DAY) if d.pending.rule == "cart"]
    assert [d.pending.key for d in carts] == ["e3"]  # the first cart was checked out


def test_an_emptied_cart_is_not_abandoned() -> None:
    removed = event("product_removed", T0 + MINUTE, 2, product_id="P-1", quantity=1)
    assert run(feed([add(T0, 1), removed]), T0 + DAY) == []


def test_a_cart_left_open_carries_its_items_into_the_next_one() -> None:
    watch = feed([add(T0, 1), add(T0 + 2 * HOUR, 2, "P-2")])
    decisions = run(watch, T0 + DAY)
    assert [(d.pending.key, d.pending.products) for d in decisions] == [
        ("e1", ["P-1"]),
        ("e2", ["P-1", "P-2"]),
    ]


# --- the other situations --------------------------------------------------------------------


def test_high_intent_fires_once_per_session_at_the_third_view() -> None:
    views = [view(T0 + i * MINUTE, i) for i in range(5)]
    later = [view(T0 + 2 * HOUR + i * MINUTE, 10 + i) for i in range(3)]
    decisions = run(feed(views + later), T0 + DAY)
    assert [(d.pending.key, d.pending.at) for d in decisions] == [
        ("e0", T0 + 2 * MINUTE),
        ("e10", T0 + 2 * HOUR + 2 * MINUTE),
    ]


def test_views_of_different_products_are_not_intent() -> None:
    views = [view(T0 + i * MINUTE, i, f"P-{i % 3}") for i in range(6)]
    assert run(feed(views), T0 + DAY) == []


def test_churn_fires_when_the_risk_crosses_the_threshold_upward() -> None:
    watch = Watch()
    for i, risk in enumerate([0.5, 0.8, 0.9, 0.6, 0.75]):
        scored(watch, risk, ["quiet lately"], T0 + i * HOUR, f"k{i}", CONFIG)
    decisions = run(watch, T0 + DAY)
    assert [d.pending.key for d in decisions] == ["k1", "k4"]
    assert decisions[0].pending.reasons[1] == "quiet lately"


def test_win_back_fires_on_entering_the_segment_only() -> None:
    watch = Watch()
    for transition in [
        Transition("C-1", "At risk", True, T0),
        Transition("C-1", "At risk", False, T0 + HOUR),
        Transition("C-1", "Champions", True, T0 + 2 * HOUR),
        Transition("C-1", "At risk", True, T0 + 3 * HOUR),
    ]:
        entered(watch, transition, CONFIG)
    decisions = run(watch, T0 + DAY)
    assert [d.pending.at for d in decisions] == [T0, T0 + 3 * HOUR]


def test_cross_sell_fires_per_order_and_needs_no_marketing_consent() -> None:
    watch = feed([order(T0, 1, "O-1"), order(T0 + HOUR, 2, "O-2")])
    decisions = run(watch, T0 + DAY, consent={})
    assert [(d.pending.key, d.outcome) for d in decisions] == [("O-1", "fired"), ("O-2", "fired")]


# --- consent, cooldowns, caps, holdout -------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "outcome"),
    [
        ({}, "no_consent"),
        ({"marketing": (T0 - HOUR, False)}, "no_consent"),
        ({"marketing": (T0 + HOUR, True)}, "no_consent"),  # granted after the situation
        ({"marketing": (T0 - HOUR, True)}, "fired"),
        ({"analytics": (T0 - HOUR, True)}, "no_consent"),
    ],
)
def test_marketing_rules_need_marketing_consent_at_the_time(
    consent: dict[str, tuple[int, bool]], outcome: str
) -> None:
    [decision] = run(feed([add(T0 - 30 * MINUTE, 1)]), T0 + DAY, consent=consent)
    assert decision.outcome == outcome


def config_with(**rule: Any) -> TriggerConfig:
    caps = rule.pop("caps", {"per_day": 100, "per_week": 100})
    return TriggerConfig.model_validate(
        {"caps": caps, "rules": [{"name": "intent", "kind": "high_intent", **rule}]}
    )


def sessions(count: int, every: int) -> list[Event]:
    """``count`` sessions ``every`` ms apart, each with three views of one product."""
    return [view(T0 + s * every + i * MINUTE, 10 * s + i) for s in range(count) for i in range(3)]


def test_cooldown_in_event_time() -> None:
    config = config_with(cooldown_hours=5)
    decisions = run(feed(sessions(4, 2 * HOUR), config), T0 + DAY, config=config)
    assert [d.outcome for d in decisions] == ["fired", "cooldown", "cooldown", "fired"]


def test_caps_per_day_across_sessions() -> None:
    config = config_with(cooldown_hours=0, caps={"per_day": 2, "per_week": 100})
    decisions = run(feed(sessions(4, 2 * HOUR), config), T0 + DAY, config=config)
    assert [d.outcome for d in decisions] == ["fired", "fired", "capped", "capped"]


def test_a_suppressed_situation_uses_up_nothing() -> None:
    config = config_with(cooldown_hours=3)
    decisions = run(feed(sessions(3, 2 * HOUR), config), T0 + DAY, config=config)
    # the second is in cooldown; the third is 4 hours after the first firing
    assert [d.outcome for d in decisions] == ["fired", "cooldown", "fired"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 7 * 24), min_size=1, max_size=30),
    st.integers(0, 48),
    st.integers(1, 4),
)
def test_fired_and_holdout_firings_respect_cooldown_and_caps(
    hours: list[int], cooldown: int, per_day: int
) -> None:
    config = config_with(
        cooldown_hours=cooldown, holdout=0.3, caps={"per_day": per_day, "per_week": 100}
    )
    watch = Watch()
    entries = sorted(set(hours))
    views = [view(T0 + h * HOUR + i * MINUTE, 10 * h + i) for h in entries for i in range(3)]
    watch = feed(views, config)
    decisions = run(watch, T0 + 30 * DAY, config=config)
    sent = [d.pending.at for d in decisions if d.outcome in ("fired", "holdout")]
    assert len(decisions) == len(entries)  # one decision per session
    for i, a in enumerate(sent):
        assert all(abs(a - b) >= cooldown * HOUR for b in sent[i + 1 :])
        assert sum(a <= b < a + DAY for b in sent) <= per_day  # any 24 hours


def test_holdout_is_a_stable_share_of_trigger_ids() -> None:
    ids = [f"cart:C-{i}:e{i}" for i in range(20_000)]
    share = sum(in_holdout(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [in_holdout(i, 0.1) for i in ids[:100]] == [in_holdout(i, 0.1) for i in ids[:100]]
    assert not any(in_holdout(i, 0.0) for i in ids)


# --- attribution -----------------------------------------------------------------------------


def test_an_order_within_the_window_is_a_conversion() -> None:
    config = TriggerConfig.model_validate(
        {"rules": [{"name": "cart", "kind": "cart_abandoned", "attribution_days": 1}]}
    )
    watch = feed([add(T0, 1), order(T0 + 5 * HOUR, 2, "O-9")], config)
    decisions, attributions = decide(watch, "C-1", GRANTED, T0 + HOUR, config, offer)
    assert [d.outcome for d in decisions] == ["fired"] and attributions == []
    _, attributions = decide(watch, "C-1", GRANTED, T0 + 2 * DAY, config, offer)
    assert [(a.exposure.trigger_id, a.converted) for a in attributions] == [("cart:C-1:e1", True)]
    assert next_due(watch, config) is None


# --- configuration ---------------------------------------------------------------------------


def test_the_default_and_example_rules_load() -> None:
    kinds = {r.kind for r in load_rules().rules}
    assert kinds == {"cart_abandoned", "churn_risk", "high_intent", "win_back", "cross_sell"}
    example = Path(__file__).resolve().parents[2] / "deploy" / "triggers.yaml"
    # the example shows every kind: the built-in ones and a custom event rule
    assert {r.kind for r in load_rules(example).rules} == kinds | {"custom_event"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("rules: [{name: a, kind: cart_abandoned}, {name: b, kind: cart_abandoned}]", "one rule"),
        ("rules: [{name: a, kind: cart_abandoned, after_minutes: -1}]", "after_minutes"),
        ("rules: [{name: a, kind: teleport}]", "kind"),
        ("rules: [{name: a, kind: high_intent, holdout: 1.5}]", "holdout"),
        ("rules: [oops", "not valid YAML"),
    ],
)
def test_a_bad_rules_file_names_the_file_and_the_problem(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_a_missing_rules_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CDPULSE_TRIGGER_RULES"):
        load_rules(tmp_path / "nope.yaml")


def test_win_back_through_the_engine_fires_from_constructed_transitions() -> None:
    """The segment stage's transitions, handed to the engine with the batch's profile,
    are decided when the watermark passes them, like every other situation."""
    engine = TriggerEngine(CONFIG, session_gap=GAP)
    at_risk = Transition("C-1", "At risk", True, T0)
    consenting = Profile(id="C-1", customer_id="C-1", consent=dict(GRANTED))
    silent = Profile(id="C-2", customer_id="C-2")
    for profile in (consenting, silent):
        assert engine.after_profile(profile, [at_risk]) == T0
    assert engine.after_profile(Profile(id="a-9"), [at_risk]) is None  # not a customer

    decided = []
    for profile in (consenting, silent):
        early, due = engine.decide_due(profile, T0 - 1)
        assert early.decisions == [] and due == T0
        expired, _ = engine.decide_due(profile, T0)
        decided += expired.decisions
        assert engine.decide_due(profile, T0 + DAY)[0].decisions == []  # decided once
    assert sorted((d.trigger_id, d.outcome) for d in decided) == [
        (f"winback:C-1:At risk@{T0}", "fired"),
        (f"winback:C-2:At risk@{T0}", "no_consent"),
    ]


def test_win_back_entered_twice_is_one_situation() -> None:
    """The RFM sweep and the customer's own batch may both hand over the same entry:
    a situation already pending is not added again, and leaving is no situation."""
    engine = TriggerEngine(CONFIG, session_gap=GAP)
    profile = Profile(id="C-1", customer_id="C-1", consent=dict(GRANTED))
    at_risk = Transition("C-1", "At risk", True, T0)
    engine.after_profile(profile, [at_risk, Transition("C-1", "At risk", False, T0 + HOUR)])
    engine.after_profile(profile, [at_risk])
    assert profile.watch is not None
    assert [(p.rule, p.at) for p in profile.watch.pending] == [("winback", T0)]


def test_churn_crossing_through_the_engine_reads_the_score_written_with_the_profile() -> None:
    engine = TriggerEngine(CONFIG, session_gap=GAP)
    profile = Profile(id="C-1", customer_id="C-1", last_seen=T0, watch=Watch())
    for risk in (0.4, 0.75, 0.8):
        profile.churn_risk, profile.churn_reasons = risk, ["no order for 40 days"]
        profile.last_seen += HOUR
        engine.after_profile(profile)
    assert profile.watch is not None
    [pending] = profile.watch.pending
    assert (pending.rule, pending.at) == ("churn", T0 + 2 * HOUR)
    assert pending.reasons == ["churn risk rose to 0.75 (threshold 0.70)", "no order for 40 days"]


@pytest.mark.parametrize("late_checkout", [False, True])
def test_lateness_waits_for_events_sent_late(late_checkout: bool) -> None:
    """A checkout just before the deadline that reaches Kafka a little late still closes
    the cart: decisions wait until the watermark is ``lateness`` past their time."""
    engine = TriggerEngine(CONFIG, session_gap=GAP, lateness=MINUTE)
    deadline = T0 + 30 * MINUTE
    profile = Profile(id="C-1", customer_id="C-1", consent=dict(GRANTED))

    def apply(events: list[Event]) -> None:
        for e in events:
            engine.observe(profile, e, e.at)
        assert engine.after_profile(profile) is not None

    apply([add(T0, 1)])
    assert engine.decide_due(profile, deadline)[0].decisions == []
    if late_checkout:
        apply([event("checkout_started", deadline - 1000, 2)])
    decided = engine.decide_due(profile, deadline + MINUTE)[0].decisions
    assert [d.outcome for d in decided] == ([] if late_checkout else ["fired"])
