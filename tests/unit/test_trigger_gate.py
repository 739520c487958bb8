"""The trigger gate's pure logic (monitors/health.py, triggers/decide.py): which event-time
hours a broken producer flags, and what a gated rule decides from the flags.

The flagged hours are held to the problems injected (simulate/breakage.py): every hour
the oracle reads from the sent JSON as broken, with enough events to tell, is flagged
with the right reason; no hour outside a problem's window is.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdpulse.app.worker import Worker
from cdpulse.contract.message import Message
from cdpulse.contract.mirror import decode
from cdpulse.contract.topics import STREAM_OF_TYPE
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
from cdpulse.pipeline.batch import ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile.rules import Rules
from cdpulse.profile.watch import Pending, Watch
from cdpulse.settings import Settings
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


# --- held, then released by the gate alone --------------------------------------------

SELL_GATED = TriggerConfig.model_validate(
    {
        "gates": {"churn": {}},
        "rules": [
            {
                "name": "sell",
                "kind": "cross_sell",
                "marketing": False,
                "cooldown_hours": 0,
                "holdout": 0.0,
                "gated_by": ["churn"],
            }
        ],
    }
)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a hour
MINUTE = 60_000


def customer_does(customer: str, minute: int, *kinds: str) -> list[dict[str, Any]]:
    """``customer``'s events of ``kinds`` at ``minute`` after T0 (an order: product P1)."""
    stamp = datetime.fromtimestamp((T0 + minute * MINUTE) / 1000, UTC)
    events: list[dict[str, Any]] = []
    for kind in kinds:
        event: dict[str, Any] = {
            "event_id": f"{customer}-{kind}-{minute}",
            "type": kind,
            "timestamp": stamp.isoformat(),
            "customer_id": customer,
            "channel": "web",
        }
        if kind == "page_viewed":
            event["properties"] = {"url": "/"}
        elif kind == "order_completed":
            item = {"product_id": "P1", "category": "shoes", "price": 10.0, "quantity": 1}
            event["properties"] = {
                "order_id": f"O-{customer}-{minute}",
                "revenue": 10.0,
                "currency": "EUR",
                "items": [item],
            }
        events.append(event)
    return events


class Broker:
    """One partition per input topic, offsets counted as a broker would."""

    def __init__(self) -> None:
        self.offsets: Counter[str] = Counter()

    def batch(self, events: list[dict[str, Any]]) -> list[Message]:
        out = []
        for event in events:
            topic = f"cdp.{STREAM_OF_TYPE[event['type']]}"
            key = event["customer_id"].encode()
            out.append(Message(topic, 0, self.offsets[topic], key, json.dumps(event).encode()))
            self.offsets[topic] += 1
        return out


def test_a_held_situation_is_decided_once_its_hour_is_judged_with_no_event_after() -> None:
    """The worker decides a batch while the one before it is written, and judges the input
    health after each write: a batch may decide at a watermark whose hours the gate it
    reads has not judged yet. A gated situation due then is held, though no later event
    is needed to release it: once the gate judges its hour, the idle worker's empty batch
    decides it, even when the stream has ended and the low watermark stays put.

    (Before, the idle timer ran only when the low watermark moved: the situation stayed
    held for good, and tests/integration/test_trigger_gate.py timed out waiting for the
    worker to decide what became due, issue 14.)
    """
    lateness = MINUTE
    models = Models()
    engine = Engine(Rules(), models, triggers=SELL_GATED, trigger_lateness=lateness)
    state, outlet = MemoryState(), MemoryOutlet()
    pipe = ProfilePipeline(
        state,
        outlet,
        Stages(engine),
        partitions=3,
        sharding=Sharding(owned=lambda: (0,), shard_of=lambda profile_id: 0),
    )
    settings = Settings(pseudonym_key="k" * 32)
    # Only what the idle timer reads: the pipeline, the models' gate and its own notes.
    worker = Worker(settings, None, pipe, None, models, None)
    models.gate = Gate()  # as the worker starts: nothing judged, every gated rule held

    def judge() -> None:
        """The worker's gate after a write: one worker owns every partition and judges
        them through the hour its low watermark passed; no hour is flagged."""
        models.gate = Gate({}, settled=judged_through(pipe.low_watermark))

    broker = Broker()
    everything = ("identify", "page_viewed", "order_completed")  # one per input topic
    # c orders at 00:05 (a cross-sell situation); the shop goes on to 02:05, which passes
    # its hour's end plus SETTLE and the lateness; d views a page at 02:10 on the
    # clickstream alone, so the low watermark stays at 02:05 from then on.
    first = broker.batch(customer_does("c", 5, *everything))
    later = broker.batch(customer_does("d", 125, *everything))
    last = broker.batch(customer_does("d", 130, "page_viewed"))
    hour = T0 // HOUR
    assert (hour + 1) * HOUR + SETTLE + lateness <= T0 + 125 * MINUTE
    assert judged_through(T0 + 125 * MINUTE) >= hour

    async def main() -> list[tuple[str, str, str]]:
        decided: list[tuple[str, str, str]] = []

        def note(report: Any) -> None:
            worker.note(report)
            decided.extend(
                (d.customer_id, d.pending.rule, d.outcome) for d in report.work.decisions
            )

        note(await pipe.run(first))
        judge()
        note(await pipe.run(later))
        # The next batch begins before the write above has been judged (the worker
        # judges after each write, while it already decides the next batch).
        begun = await pipe.begin(last)
        judge()
        report = await pipe.finish(begun)
        note(report)
        judge()
        assert report.decided_at == T0 + 125 * MINUTE == pipe.low_watermark
        assert decided == [], "held: its hour was not judged when the batch began"
        assert state.trigger_due[0]["c"] <= report.decided_at
        # The stream has ended: only the idle timer's empty batches come now.
        for _ in range(3):
            if not worker.idle_due():
                break
            note(await pipe.run([]))
            judge()
        assert not worker.idle_due(), "nothing left to decide: the worker idles"
        return decided

    decided = asyncio.run(main())
    assert decided == [("c", "sell", "fired")]
    assert all(at > T0 + 125 * MINUTE for at in state.trigger_due[0].values())


def test_a_rule_gated_by_an_undeclared_model_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"gated by 'clv'.*declared: churn"):
        TriggerConfig.model_validate(
            {"rules": [{"name": "x", "kind": "cross_sell", "gated_by": ["clv"]}]}
        )
