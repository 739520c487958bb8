"""The live KPI counters over a Kafka-like delivery of simulated events, against the oracle.

The worker's pipeline runs in-process over the in-memory store (the same stages and the
same semantics as ``write.lua``: a save's counters are added only if the save is).
Events are spread over topics and partitions as a producer would, partitions interleave
with up to an hour of lag, batches are cut at random; the counters must equal
``tests.kpi_oracle``'s, field by field, and a redelivery must change none of them.

Identity and consent events are produced first: what a customer who refused analytics
counted for depends on when the refusal was known (README: Live KPIs), so the tests make
it known before the customer's behaviour arrives, in whatever order that comes.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract.message import Message
from cdpulse.kpis.fields import week_of
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile.activity import Activity
from cdpulse.segments.definitions import SegmentBook, parse
from cdpulse.simulate import Shop
from tests import kpi_oracle
from tests.unit.test_pipeline import (
    PARTITIONS,
    RULES,
    Record,
    arrival_order,
    cut,
    encode,
    key_of,
    partition_of,
    topic_of,
)

Event = dict[str, Any]
FIRST = frozenset({"identify", "consent_updated"})
METRICS = (
    *("visitors", "customers", "viewers", "cart_adders", "checkout_starters", "buyers"),
    *("new_visitors", "repeat_buyers", "sessions", "product_views", "cart_adds", "checkouts"),
    *("orders", "revenue_cents", "refunds", "refunded_cents", "order_gaps", "order_gap_ms"),
    *("email_opens", "email_clicks", "email_openers", "email_clickers"),
    *("reco_views", "reco_orders", "reco_revenue_cents", "offers_shown", "offer_views"),
    *("offer_orders", "offer_revenue_cents", "offers_redeemed"),
)
BOOK = parse(
    """
rfm: false
segments:
  - name: buyer
    when: orders >= 1
"""
)


def with_attribution(events: list[Event]) -> list[Event]:
    """The shop's events, some views and orders carrying what led to them (the shop
    does not say): a recommendation list's id, an offer's id."""
    out = []
    for n, event in enumerate(events):
        if event["type"] in ("product_viewed", "order_completed"):
            props = dict(event["properties"])
            if n % 7 == 0:
                props["recommendation_id"] = f"list-{n % 3}"
            if n % 11 == 0:
                props["offer_id"] = ("welcome10", "winter15")[n % 2]
            event = {**event, "properties": props}
        out.append(event)
    return out


def produced(phases: list[list[Event]], rng: random.Random) -> list[Message]:
    """Each phase produced after the one before was consumed: offsets continue per
    partition, and each phase arrives interleaved (``arrival_order``)."""
    base: Counter[tuple[str, int]] = Counter()
    out: list[Message] = []
    for events in phases:
        arrived = arrival_order([Record(e, encode(e)) for e in events], rng)
        for m in arrived:
            offset = base[(m.topic, m.partition)] + m.offset
            out.append(Message(m.topic, m.partition, offset, m.key, m.value, m.timestamp))
        base.update(Counter((m.topic, m.partition) for m in arrived))
    return out


class Engine1:
    """A pipeline over memory and the batches it ran."""

    def __init__(self, book: SegmentBook | None = None) -> None:
        self.state = MemoryState()
        stages = Stages(Engine(RULES, Models(), book=book))
        self.pipeline = ProfilePipeline(
            self.state, MemoryOutlet(), stages, partitions=3 * PARTITIONS
        )

    def run(self, batches: list[list[Message]]) -> None:
        async def main() -> None:
            for batch in batches:
                await self.pipeline.run(batch)

        asyncio.run(main())

    def counters(self) -> kpi_oracle.Counters:
        return kpi_oracle.without_segments(self.state.kpis)


def shop_stream(customers: int, days: int, seed: int) -> tuple[list[Event], list[Event]]:
    events = with_attribution(list(Shop(customers=customers, days=days, seed=seed).events()))
    return [e for e in events if e["type"] in FIRST], [e for e in events if e["type"] not in FIRST]


def test_counters_equal_the_oracle_and_a_redelivery_changes_none() -> None:
    rng = random.Random(12)
    first, rest = shop_stream(160, 24, 5)
    messages = produced([first, rest], rng)
    batches = cut(messages, rng, 400)
    engine = Engine1()
    engine.run(batches)
    actual = engine.counters()
    wanted = kpi_oracle.expected([m.value for m in messages], now=datetime.now(UTC))
    problems = kpi_oracle.differences(actual, wanted)
    assert not problems, "KPI counters differ from the oracle:\n  " + "\n  ".join(problems)

    # The stream is rich enough for every counter to mean something.
    days = [f for p, f in wanted.items() if p.startswith("day:")]
    total = {name: sum(f.get(name, 0) for f in days) for name in METRICS}
    for name, n in total.items():
        assert n > 0, f"the stream never counts {name}"
    assert any(p.startswith("cohort:") and "active:2" in f for p, f in wanted.items())
    assert any("|f:newsletter/email/" in k for f in days for k in f)
    refused = sum(
        1
        for e in first
        if e["type"] == "consent_updated" and e["properties"]["purposes"]["analytics"] is False
    )
    assert refused > 3, "no customer refused analytics: consent is not exercised"

    # Redelivery: every batch again, cut otherwise (a worker died before committing).
    engine.run(cut(list(messages), rng, 700))
    assert engine.counters() == actual


def test_counters_do_not_depend_on_arrival_or_batches() -> None:
    first, rest = shop_stream(60, 10, 8)
    results = []
    for seed in (1, 2):
        rng = random.Random(seed)
        engine = Engine1()
        engine.run(cut(produced([first, rest], rng), rng, 50 + 300 * seed))
        results.append(engine.counters())
    assert results[0] == results[1]


def test_segment_splits_count_a_save_under_the_segments_it_leaves_the_customer_in() -> None:
    """Every order makes its customer a buyer, so by segment ``buyer`` every order,
    its revenue and its day's buyer are counted, and no visit before the first order."""
    rng = random.Random(3)
    first, rest = shop_stream(60, 10, 4)
    engine = Engine1(BOOK)
    engine.run(cut(produced([first, rest], rng), rng, 300))
    checked = 0
    for period, fields in engine.state.kpis.items():
        if not period.startswith("day:"):
            continue
        for metric in ("orders", "revenue_cents", "buyers"):
            assert fields.get(f"{metric}|s:buyer", 0) == fields.get(metric, 0), (period, metric)
            checked += fields.get(metric, 0)
        assert fields.get("visitors|s:buyer", 0) <= fields.get("visitors", 0)
    assert checked > 0


# --- late events, merges and the bounds, by hypothesis ---------------------------------------

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
HOUR = 3_600_000


def _event(n: int, kind: str, t: int, ids: dict[str, str], **extra: Any) -> Event:
    properties: dict[str, Any] = {
        "page_viewed": {"url": "/"},
        "product_viewed": {"product_id": "P1", "category": "c", "price": 2.5},
        "product_added": {"product_id": "P1", "category": "c", "price": 2.5},
        "checkout_started": {},
        "order_completed": {
            "order_id": f"o{n}",
            "revenue": 10.25,
            "currency": "EUR",
            "items": [{"product_id": "P1", "category": "c", "price": 10.25, "quantity": 1}],
        },
        "order_refunded": {"order_id": "o1", "amount": 3.5, "currency": "EUR"},
        "email_opened": {"campaign_id": "news-1"},
        "email_clicked": {"campaign_id": "news-1"},
        "offer_shown": {"offer_id": "ten"},
        "identify": {},
        "customers_merged": {"merged_id": "C-2", "requested_by": "ops"},
        "custom": {"seconds": 12},
    }[kind]
    event: Event = {
        "event_id": f"h{n}",
        "type": kind,
        "timestamp": t,
        "channel": extra.pop("channel", "web"),
        "properties": properties,
        **ids,
    }
    if "campaign" in extra:
        event["context"] = {"campaign": {"source": "ads", "name": extra.pop("campaign")}}
    if kind == "custom":
        event["name"] = "video_played"
    return event


KINDS = (
    "page_viewed",
    "product_viewed",
    "product_added",
    "checkout_started",
    "order_completed",
    "order_refunded",
    "email_opened",
    "email_clicked",
    "offer_shown",
    "custom",
)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Two visitors and two customers, events spread over three weeks in any order; the
    visitors log in as the first customer at some point (a merge, maybe after the fact),
    and an admin may merge the second customer into the first."""
    events = []
    for n in range(draw(st.integers(1, 40))):
        who = draw(st.sampled_from(["a-1", "a-2", "C-1", "C-2"]))
        ids = {"customer_id": who} if who.startswith("C") else {"anonymous_id": who}
        kind = draw(st.sampled_from(KINDS))
        if kind.startswith("email") and "customer_id" not in ids:
            ids = {"customer_id": "C-1"}
        t = T0 + draw(st.integers(0, 21 * 24)) * HOUR + draw(st.integers(0, HOUR))
        extra: dict[str, Any] = {"channel": draw(st.sampled_from(["web", "app", "store"]))}
        if draw(st.integers(0, 4)) == 0:
            extra["campaign"] = draw(st.sampled_from(["spring", "summer"]))
        events.append(_event(n, kind, t, ids, **extra))
    for n, visitor in enumerate(draw(st.lists(st.sampled_from(["a-1", "a-2"]), unique=True))):
        at = draw(st.integers(0, len(events)))
        t = T0 + draw(st.integers(0, 21 * 24)) * HOUR
        login = _event(100 + n, "identify", t, {"customer_id": "C-1", "anonymous_id": visitor})
        events.insert(at, login)
    if draw(st.booleans()):
        # An admin merge of C-2 into C-1 (refused by both when C-2 was not seen before it).
        at = draw(st.integers(0, len(events)))
        t = T0 + draw(st.integers(0, 21 * 24)) * HOUR
        merge = _event(200, "customers_merged", t, {"customer_id": "C-1"}, channel="partner")
        events.insert(at, merge)
    return events


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_late_events_and_merges_count_as_the_oracle_says(
    events: list[Event], max_batch: int, rng: random.Random
) -> None:
    """In processing order, one partition per key: late events move first visits and
    orders, merges join two customers' days, sessions and orders.

    An admin merge begins a batch: the engine merges a customer stored before the batch
    (``pipeline.identity``), the oracle one seen in an event before the merge, which
    differ when both come in one batch; that is not what this test is about."""
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for event in events:
        key = key_of(event)
        where = (topic_of(event), partition_of(key))
        offsets[where] = offsets.get(where, -1) + 1
        messages.append(Message(*where, offsets[where], key.encode(), json.dumps(event).encode()))
    merge = next((n for n, e in enumerate(events) if e["type"] == "customers_merged"), None)
    parts = [messages] if merge is None else [messages[:merge], messages[merge:]]
    engine = Engine1()
    engine.run([batch for part in parts for batch in cut(part, rng, max_batch)])
    wanted = kpi_oracle.expected([m.value for m in messages], now=datetime.now(UTC))
    problems = kpi_oracle.differences(engine.counters(), wanted)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("day", [20454, 20455, 20458, 20460])
def test_weeks_start_on_monday(day: int) -> None:
    monday = week_of(day)
    assert kpi_oracle.monday(day) == monday
    assert datetime.fromtimestamp(monday * 86_400, UTC).weekday() == 0


def test_activity_is_cleared_with_the_profile_when_analytics_is_refused() -> None:
    from cdpulse.profile.model import Profile
    from cdpulse.profile.rules import minimise

    profile = Profile(id="C-1", activity=Activity(days={20454: 1}, first_visit=20454))
    minimise(profile)
    assert profile.activity is None
