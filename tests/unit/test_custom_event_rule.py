"""Trigger rules on custom events (``kind: custom_event``): configured like the built-in
kinds, one situation per matching event, decided once through the batch pipeline in any
arrival order and with a worker dying between publishing and writing.

The expected firings are read from the events sent, apart from the engine: every
identified custom event of a rule's name whose properties satisfy its condition.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import datetime
from itertools import count
from typing import Any

import pytest

from cdpulse.contract.mirror import CustomEvent
from cdpulse.pipeline.batch import ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply
from cdpulse.profile.watch import Watch
from cdpulse.simulate import Shop
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.rules import TriggerConfig, load_rules
from tests.unit.test_custom_events import parsed
from tests.unit.test_pipeline import PARTITIONS, Record, arrival_order, cut, encode, partition_of
from tests.unit.test_trigger_replay import Crash, CrashingState

RULES: dict[str, Any] = {
    "rules": [
        {
            "name": "big_wish",
            "kind": "custom_event",
            "event": "wishlist_added",
            "when": "event.price > 100.0",
            "marketing": False,
        },
        {"name": "any_video", "kind": "custom_event", "event": "video_played", "marketing": False},
        {
            "name": "repeat_video",
            "kind": "custom_event",
            "event": "video_played",
            "when": 'event.quality == "hd" && custom.video_played >= 1',
            "marketing": False,
        },
        {"name": "cross_sell", "kind": "cross_sell", "marketing": False, "cooldown_hours": 0},
    ]
}
CONFIG = TriggerConfig.model_validate(RULES)
_ids = count()


def millis(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def with_custom_events(seed: int) -> list[dict[str, Any]]:
    """A simulated shop, and custom events of its customers (and of visitors) among them."""
    rng = random.Random(seed)
    shop = list(Shop(customers=120, days=4, seed=seed).events())
    customers = sorted({e["customer_id"] for e in shop if e.get("customer_id")})
    times = [millis(e["timestamp"]) for e in shop]
    extra = []
    for _ in range(400):
        name = rng.choice(["wishlist_added", "video_played", "banner_closed"])
        event: dict[str, Any] = {
            "event_id": f"x{next(_ids)}",
            "type": "custom",
            "name": name,
            "timestamp": rng.randint(min(times), max(times)),
            "channel": "web",
            "properties": {"price": rng.choice([20.0, 150.0]), "quality": rng.choice(["hd", "sd"])},
        }
        if rng.random() < 0.9:
            event["customer_id"] = rng.choice(customers)
        else:
            event["anonymous_id"] = f"anon-{rng.randrange(50)}"
        extra.append(event)
    return sorted([*shop, *extra], key=lambda e: at_of(e))


def at_of(event: dict[str, Any]) -> int:
    stamp = event["timestamp"]
    return stamp if isinstance(stamp, int) else millis(stamp)


def withholding(events: list[dict[str, Any]]) -> set[str]:
    """Customers who withheld analytics at some point, themselves or as a visitor they
    identified as: their profile stops counting events then (``privacy/consent.py``), so
    ``custom.video_played`` may be absent when a video of theirs is decided."""
    links = {
        e["anonymous_id"]: e["customer_id"]
        for e in events
        if e["type"] == "identify" and e.get("anonymous_id") and e.get("customer_id")
    }
    out = set()
    for e in events:
        if e["type"] == "consent_updated" and e["properties"]["purposes"].get("analytics") is False:
            who = e.get("customer_id") or e.get("anonymous_id")
            out.add(links.get(who, who))
    return out


def expected(events: list[dict[str, Any]], watermark: int) -> set[str]:
    """The custom rules' firings decided by ``watermark``, read from the events (for a
    customer who withheld analytics, ``repeat_video`` may or may not fire: see
    ``withholding``)."""
    out = set()
    for e in events:
        if e["type"] != "custom" or not e.get("customer_id") or at_of(e) > watermark:
            continue
        customer, props = e["customer_id"], e["properties"]
        if e["name"] == "wishlist_added" and props["price"] > 100.0:
            out.add(f"big_wish:{customer}:{e['event_id']}")
        if e["name"] == "video_played":
            out.add(f"any_video:{customer}:{e['event_id']}")
            # the event itself is counted before the condition reads the profile
            if props["quality"] == "hd":
                out.add(f"repeat_video:{customer}:{e['event_id']}")
    return out


async def replay(events: list[dict[str, Any]], seed: int, crash_rate: float) -> Any:
    rng = random.Random(seed)
    state = CrashingState(rng, crash_rate)
    outlet = MemoryOutlet()
    pipeline = ProfilePipeline(
        state,
        outlet,
        Stages(Engine(Rules(), Models(), triggers=CONFIG)),
        partitions=3 * PARTITIONS,
        sharding=Sharding(lambda: tuple(range(PARTITIONS)), partition_of),
        due_limit=rng.randint(5, 50),
    )
    records = [Record(e, encode(e)) for e in events]
    decisions = []
    for batch in [*cut(arrival_order(records, rng), rng, 40), [], [], []]:
        while True:
            try:
                report = await pipeline.run(batch)
                break
            except Crash:
                continue
        decisions += report.work.decisions
    published = [json.loads(v) for v in outlet.values(Stream.TRIGGERS)]
    return decisions, published, pipeline.low_watermark


@pytest.mark.parametrize(("seed", "crash_rate"), [(1, 0.0), (2, 0.3)])
def test_each_matching_custom_event_fires_once(seed: int, crash_rate: float) -> None:
    events = with_custom_events(seed)
    decisions, published, watermark = asyncio.run(replay(events, seed, crash_rate))
    custom = [d for d in decisions if d.pending.rule in ("big_wish", "any_video", "repeat_video")]
    ids = Counter(d.trigger_id for d in custom)
    assert [i for i, n in ids.items() if n > 1] == [], "a custom event decided twice"
    assert {d.outcome for d in custom} == {"fired"}
    truth = expected(events, watermark)
    withheld = withholding(events)
    maybe = {i for i in truth if i.startswith("repeat_video:") and i.split(":")[1] in withheld}
    assert truth - maybe <= set(ids) <= truth, (sorted(truth - set(ids)), sorted(set(ids) - truth))
    truth = set(ids)
    assert {i.split(":")[0] for i in truth} == {"big_wish", "any_video", "repeat_video"}
    sent = [m for m in published if m["kind"] == "custom_event"]
    assert {m["trigger_id"] for m in sent} == truth  # at least once each, nothing else
    every = Counter(m["trigger_id"] for m in published)
    if crash_rate:
        assert max(every.values()) > 1, "no firing was published twice: no crash tested"
    else:
        assert len(sent) == len(truth) and max(every.values()) == 1
    for message in sent:
        assert message["reasons"][0].startswith("custom event ")


def test_the_condition_reads_the_profile_with_the_event_applied() -> None:
    rules = Rules()
    engine = TriggerEngine(CONFIG, session_gap=rules.session_gap, rules=rules)
    profile = Profile(id="C-1", customer_id="C-1")
    profile.watch = Watch()

    def video(n: int, quality: str) -> CustomEvent:
        raw = {
            "event_id": f"v{n}",
            "type": "custom",
            "name": "video_played",
            "timestamp": 1_700_000_000_000 + n,
            "customer_id": "C-1",
            "channel": "web",
            "properties": {"quality": quality},
        }
        event = parsed(raw)
        assert isinstance(event, CustomEvent)
        return event

    # Without the profile's count (the custom counts are the profile rules' job), the
    # condition `custom.video_played >= 1` cannot be decided: no situation.
    engine.observe(profile, video(1, "hd"), 1)
    assert [p.rule for p in profile.watch.pending] == ["any_video"]
    second = video(2, "hd")
    apply(profile, second, rules)
    engine.observe(profile, second, 2)
    assert [p.rule for p in profile.watch.pending] == ["any_video", "any_video", "repeat_video"]
    assert profile.watch.pending[-1].key == "v2"


def test_custom_event_rules_are_configured_like_the_others(tmp_path: Any) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: wish\n    kind: custom_event\n    event: wishlist_added\n"
        "    when: event.price > 100.0 && orders >= 1\n    offers: [discount_10]\n",
        encoding="utf-8",
    )
    rule = load_rules(path).rules[0]
    assert (rule.kind, rule.cooldown_hours, rule.marketing, rule.offers) == (
        "custom_event",
        0.0,
        True,
        ["discount_10"],
    )
    for bad, words in [
        ("event: Wishlist Added", "no custom event name"),
        ("event: order_completed", "built-in event type"),
        ("event: wish\n    when: evnt.price > 1", "unknown field 'evnt'; did you mean 'event'?"),
    ]:
        path.write_text(
            f"rules:\n  - name: w\n    kind: custom_event\n    {bad}\n", encoding="utf-8"
        )
        with pytest.raises(ValueError, match=str(path)) as error:
            load_rules(path)
        assert words in str(error.value)
