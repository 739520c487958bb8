"""The trigger gate's pure logic (monitors/health.py, triggers/decide.py): which event-time
hours a broken producer flags, and what a gated rule decides from the flags.

The flagged hours are held to the problems injected (simulate/breakage.py): every hour
the oracle reads from the sent JSON as broken, with enough events to tell, is flagged
with the right reason; no hour outside a problem's window is.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from cdpulse.contract.mirror import decode
from cdpulse.monitors.health import (
    BASELINE_HOURS,
    HOUR,
    LATE,
    SETTLE,
    Gate,
    GateSpec,
    InputHealth,
    judged_through,
)
from cdpulse.profile.watch import Pending, Watch
from cdpulse.simulate.breakage import Nulls, PriceUnit, Stall, broken
from cdpulse.simulate.shop import DEFAULT_START, Shop
from cdpulse.triggers.decide import decide, next_due
from cdpulse.triggers.engine import no_offer
from cdpulse.triggers.rules import TriggerConfig

START_HOUR = int(DEFAULT_START.timestamp() * 1000) // HOUR
SPEC = GateSpec(
    fields=["page_viewed.title"],
    amounts=["product_viewed.price"],
    streams=["clickstream", "transactions"],
    min_events=5,
    lookback_hours=2,
)
NULLS = (30, 40)  # hours after the start
UNIT = (50, 60)
STALL = (66, 72)


def at(hours: float) -> datetime:
    return DEFAULT_START + timedelta(hours=hours)


def shop(seed: int = 4) -> list[dict[str, Any]]:
    """A shop whose producer breaks three ways, each fixed again later."""
    problems = [
        Nulls("page_viewed", "title", at(NULLS[0]), at(NULLS[1])),
        PriceUnit(100, at(UNIT[0]), at(UNIT[1])),
        Stall("clickstream", at(STALL[0]), at(STALL[1])),
    ]
    return list(broken(Shop(300, 5, seed=seed).events(), problems))


def hour_of(event: dict[str, Any]) -> int:
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return int(stamp.timestamp() * 1000) // HOUR - START_HOUR


def fed(events: list[dict[str, Any]], batches: int = 1) -> dict[int, str]:
    """The flags an ``InputHealth`` judges, fed in ``batches`` and judged after each by
    the low watermark (the newest event time seen), relative to the start hour."""
    health = InputHealth({"churn": SPEC})
    flags: dict[int, str] = {}
    size = -(-len(events) // batches)
    newest = 0
    for i in range(0, len(events), size):
        for event in events[i : i + size]:
            d = decode(json.dumps(event).encode())
            health.observe(d.type, d.at, d.properties)
            newest = max(newest, d.at)
        for hour, reason in health.judge(judged_through(newest)).get("churn", {}).items():
            flags[hour - START_HOUR] = reason
    return flags


def test_each_problem_flags_its_hours_and_only_those() -> None:
    events = shop()
    flags = fed(events)
    # The oracle: per hour, what the sent events show, read from the JSON.
    views = Counter(hour_of(e) for e in events if e["type"] == "page_viewed")
    priced = Counter(hour_of(e) for e in events if e["type"] == "product_viewed")
    clicks = Counter(hour_of(e) for e in events if e["type"] in ("page_viewed", "product_viewed"))
    orders = Counter(hour_of(e) for e in events if e["type"] not in ("page_viewed",))
    last = max(hour_of(e) for e in events) - 2  # judged: LATE past the end, fed in order
    for hour in range(NULLS[0], NULLS[1]):
        if views[hour] >= SPEC.min_events:
            assert flags.get(hour) == "nulls:page_viewed.title", hour
    for hour in range(UNIT[0], UNIT[1]):
        if priced[hour] >= 1:
            assert flags.get(hour) == "unit:product_viewed.price", hour
    stalled = [
        h
        for h in range(STALL[0], STALL[1])
        if orders[h] and not clicks[h] and clicks[h - 24] >= SPEC.min_events
    ]
    assert stalled, "the stall must leave hours with transactions and no clickstream"
    for hour in stalled:
        assert flags.get(hour) == "stalled:clickstream", hour
    windows = {"nulls": NULLS, "unit": UNIT, "stalled": STALL}
    for hour, reason in flags.items():
        low, high = windows[reason.split(":")[0]]
        assert low <= hour < high, (hour, reason)
        assert hour <= last
    assert {r.split(":")[0] for r in flags.values()} == set(windows)


def test_the_verdicts_do_not_depend_on_batch_boundaries() -> None:
    events = shop(seed=7)
    whole = fed(events)
    assert whole
    for batches in (3, 17, 100):
        assert fed(events, batches) == whole


def test_a_healthy_shop_flags_nothing() -> None:
    assert fed(list(Shop(300, 5, seed=4).events())) == {}


def test_unknown_is_healthy_and_baselines_skip_flagged_hours() -> None:
    health = InputHealth({"m": GateSpec(amounts=["order_completed.revenue"], min_events=3)})
    # no baseline yet: a hundredfold amount in the first hour is not judged
    health.observe_all([("order_completed", 10, {"revenue": 5000.0})])
    health.observe_all([("order_completed", HOUR + i, {"revenue": 50.0}) for i in range(3)])
    # twenty broken hours: each judged against the healthy one, not the broken ones before
    broken_hours = [
        ("order_completed", h * HOUR + i, {"revenue": 5000.0}) for h in range(2, 22) for i in (0, 1)
    ]
    health.observe_all(broken_hours)
    health.observe_all([("order_completed", 22 * HOUR, {"revenue": 51.0})])  # fixed
    flags = health.judge(22)
    assert flags == {"m": {h: "unit:order_completed.revenue" for h in range(2, 22)}}
    assert health.judge(22) == {}, "a hour is judged once"
    # Hours before a baseline's reach are forgotten with the flags that judged them.
    health.observe_all([("order_completed", (22 + BASELINE_HOURS + 5) * HOUR, {"revenue": 5.0})])
    health.judge(22 + BASELINE_HOURS + 5)
    assert min(h for _, h in health.amounts) >= 22 + 5 - 2


def test_judged_through_waits_for_late_events() -> None:
    assert judged_through(0) == -1
    assert judged_through(5 * HOUR + LATE - 1) == 3
    assert judged_through(5 * HOUR + LATE) == 4


# --- deciding -------------------------------------------------------------------------

RULES = TriggerConfig.model_validate(
    {
        "gates": {"churn": {"lookback_hours": 1}},
        "rules": [
            {"name": "churn", "kind": "churn_risk", "marketing": False, "cooldown_hours": 0},
            {"name": "sell", "kind": "cross_sell", "marketing": False, "cooldown_hours": 0},
        ],
    }
)


def watched(*pending: Pending) -> Watch:
    return Watch(risk=0.9, pending=list(pending))


def test_a_gated_rule_is_held_until_its_hour_is_judged_everywhere() -> None:
    churn = Pending("churn", "v1@x", 10 * HOUR + 5)
    sell = Pending("sell", "o1", 10 * HOUR + 5)
    watch = watched(churn, sell)
    unjudged = Gate({}, settled=9)
    # past its hour plus SETTLE, but hour 10 not judged on every partition: held
    found, _ = decide(watch, "c", {}, 12 * HOUR, RULES, no_offer, unjudged)
    assert [(d.pending.rule, d.outcome) for d in found] == [("sell", "fired")]
    assert watch.pending == [churn]
    assert next_due(watch, RULES, unjudged) == (9 + 2) * HOUR + SETTLE
    # judged everywhere: decided, but not before its hour's end plus SETTLE
    judged = Gate({}, settled=10)
    assert next_due(watch, RULES, judged) == 11 * HOUR + SETTLE
    found, _ = decide(watch, "c", {}, 11 * HOUR + SETTLE - 1, RULES, no_offer, judged)
    assert found == [] and watch.pending == [churn]
    found, _ = decide(watch, "c", {}, 11 * HOUR + SETTLE, RULES, no_offer, judged)
    assert [(d.pending.rule, d.outcome, d.reason) for d in found] == [("churn", "fired", "")]


@pytest.mark.parametrize("flagged", [9, 10])
def test_a_score_from_broken_inputs_is_gated_with_its_reason(flagged: int) -> None:
    watch = watched(Pending("churn", "v1@x", 10 * HOUR + 5))
    gate = Gate({"churn": {flagged: "unit:order_completed.revenue"}}, settled=11)
    found, _ = decide(watch, "c", {}, 20 * HOUR, RULES, no_offer, gate)
    assert [(d.outcome, d.reason) for d in found] == [
        ("gated", "churn:unit:order_completed.revenue")
    ]
    assert watch.gated == [("churn", 10 * HOUR + 5, "churn:unit:order_completed.revenue")]
    assert watch.fired == [] and watch.exposures == [], "a gated score counts for no cap"
    assert watch.risk is None, "the next score from healthy inputs may cross again"


def test_outside_the_lookback_the_gate_is_open_again() -> None:
    watch = watched(Pending("churn", "v2@y", 12 * HOUR))
    gate = Gate({"churn": {10: "stalled:clickstream"}}, settled=12)
    found, _ = decide(watch, "c", {}, 20 * HOUR, RULES, no_offer, gate)
    assert [d.outcome for d in found] == ["fired"]


def test_without_a_gate_nothing_is_held_and_a_replay_decides_the_same() -> None:
    rng = random.Random(3)
    flags = {h: "nulls:page_viewed.title" for h in rng.sample(range(40), 12)}
    gate = Gate({"churn": flags}, settled=40)
    pendings = [Pending("churn", f"v1@{i}", rng.randrange(40 * HOUR)) for i in range(30)]
    first = [decide(watched(p), "c", {}, 45 * HOUR, RULES, no_offer, gate)[0][0] for p in pendings]
    again = [decide(watched(p), "c", {}, 45 * HOUR, RULES, no_offer, gate)[0][0] for p in pendings]
    assert first == again
    expected = [
        "gated" if {p.at // HOUR, p.at // HOUR - 1} & set(flags) else "fired" for p in pendings
    ]
    assert [d.outcome for d in first] == expected
    assert "gated" in expected and "fired" in expected
    # no gate (cdpulse evaluate, the learner): decided at its time, never gated
    plain = decide(watched(pendings[0]), "c", {}, pendings[0].at, RULES, no_offer)[0]
    assert [d.outcome for d in plain] == ["fired"]


def test_a_rule_gated_by_an_undeclared_model_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"gated by 'clv'.*declared: churn"):
        TriggerConfig.model_validate(
            {"rules": [{"name": "x", "kind": "cross_sell", "gated_by": ["clv"]}]}
        )
