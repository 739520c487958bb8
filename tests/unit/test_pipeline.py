"""The profile pipeline over a Kafka-like delivery of simulated events, against the oracle.

Events are spread over three topics and four partitions by a hash of their key, as a
producer would; the consumer sees partitions interleaved arbitrarily (each lagging by up
to an hour of event time) but every partition in offset order, cut into batches of any
size. Every profile is then compared with the oracle field by field.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from cdpulse.app.reporting import record_batch
from cdpulse.contract import validation
from cdpulse.contract.message import Message
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.pipeline.batch import DUE_ONLY, BatchReport, ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile.model import Profile, decode
from cdpulse.profile.model import encode as encode_profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.view import render
from cdpulse.segments.definitions import SegmentBook, parse
from cdpulse.settings import Settings
from cdpulse.simulate import Shop
from cdpulse.simulate.malformed import MALFORMED_KINDS, malformed_event
from cdpulse.triggers.rules import load_rules
from tests import oracle

# The oracle pseudonymises personal traits under this key too.
RULES = Rules(traits=TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY)))
PARTITIONS = 4
MAX_LAG = oracle.HOUR  # how far one partition may fall behind the others, in event time
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

Event = dict[str, Any]


# --- a Kafka-like delivery -----------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One produced message before the broker gives it a partition and an offset."""

    event: Event  # the valid event it stands for (a malformed record: the one it was made from)
    value: bytes
    sticky: bool = False  # produced right after the previous record of its partition


def key_of(event: Event) -> str:
    return str(event.get("customer_id") or event["anonymous_id"])


def topic_of(event: Event) -> str:
    return f"cdp.{STREAM_OF_TYPE[event['type']]}"


def partition_of(key: str) -> int:
    # Kafka hashes the key bytes (murmur2); any stable hash keeps a key on one partition
    return zlib.crc32(key.encode()) % PARTITIONS


def encode(event: Event) -> bytes:
    return json.dumps(event).encode()


def arrival_order(records: Iterable[Record], rng: random.Random) -> list[Message]:
    """The messages as a consumer of all partitions sees them: partitions interleaved, each
    one in offset order and behind the event time by up to ``MAX_LAG``."""
    queues: dict[tuple[str, int], list[tuple[int, Message]]] = {}
    for record in records:
        key = key_of(record.event)
        where = (topic_of(record.event), partition_of(key))
        queue = queues.setdefault(where, [])
        t = oracle.millis(record.event["timestamp"])
        arrival = t + rng.randrange(MAX_LAG)
        if queue:
            arrival = queue[-1][0] if record.sticky else max(arrival, queue[-1][0])
        message = Message(*where, len(queue), key.encode(), record.value, t / 1000)
        queue.append((arrival, message))
    rank = {where: rng.random() for where in queues}
    arrived = sorted(
        (am for queue in queues.values() for am in queue),
        key=lambda am: (am[0], rank[(am[1].topic, am[1].partition)], am[1].offset),
    )
    return [m for _, m in arrived]


def cut(messages: list[Message], rng: random.Random, max_batch: int) -> list[list[Message]]:
    """Consecutive batches of 1 to ``max_batch`` messages."""
    batches = []
    while messages:
        size = rng.randint(1, max_batch)
        batches.append(messages[:size])
        messages = messages[size:]
    return batches


def with_duplicates_and_garbage(
    events: list[Event], rng: random.Random, duplicates: float, malformed: float
) -> tuple[list[Record], Counter[str]]:
    """The events, some sent twice by their client, some followed by a broken copy.

    Returns the records and the rejection reasons the broken ones must get; every kind of
    breakage appears at least once when ``malformed`` > 0.
    """
    kinds = list(MALFORMED_KINDS)
    records: list[Record] = []
    reasons: Counter[str] = Counter()
    for event in events:
        records.append(Record(event, encode(event)))
        if rng.random() < duplicates:
            records.append(Record(event, encode(event), sticky=True))
        if malformed and (kinds or rng.random() < malformed):
            raw, reason = malformed_event(rng, event, kinds.pop() if kinds else None)
            records.append(Record(event, raw, sticky=True))
            reasons[reason] += 1
    return records, reasons


# --- running and checking ------------------------------------------------------------------


def pipeline(
    state: MemoryState, outlet: MemoryOutlet, book: SegmentBook | None = None
) -> ProfilePipeline:
    stages = Stages(Engine(RULES, Models(), book=book))
    return ProfilePipeline(state, outlet, stages, partitions=3 * PARTITIONS)


# Custom segments that come and go with carts, orders and activity.
BOOK = parse(
    """
rfm: false
segments:
  - name: big_cart
    when: cart_value > 30.0
  - name: repeat_buyer
    when: orders >= 2
  - name: busy
    when: events_7d >= 15
"""
)


def segment_state(run: Run) -> dict[tuple[str, str], int]:
    """(customer, segment) -> the newest generation published (odd: a member)."""
    state: dict[tuple[str, str], int] = {}
    for value in run.outlet.values(Stream.SEGMENTS):
        t = json.loads(value)
        where = (t["customer_id"], t["segment"])
        state[where] = max(state.get(where, 0), t["generation"])
    return state


@dataclass
class Run:
    """A pipeline over an in-memory store, and the reports of the batches it processed."""

    state: MemoryState = field(default_factory=MemoryState)
    outlet: MemoryOutlet = field(default_factory=MemoryOutlet)
    reports: list[BatchReport] = field(default_factory=list)
    book: SegmentBook | None = None

    def __post_init__(self) -> None:
        self.pipeline = pipeline(self.state, self.outlet, self.book)

    def snapshot(self) -> tuple[dict[str, tuple[int, bytes]], dict[str, str]]:
        return dict(self.state.blobs), dict(self.state.aliases)

    def total(self, name: str) -> int:
        return sum(r.work.counts[name] for r in self.reports)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.outlet.values(Stream.DEAD_LETTER)]


def process(
    batches: list[list[Message]], *, redeliver: bool = True, book: SegmentBook | None = None
) -> Run:
    """Process every batch; with ``redeliver``, each one twice, checking the second changes
    nothing (the worker died before committing its offsets)."""
    run = Run(book=book)

    async def main() -> None:
        for batch in batches:
            run.reports.append(await run.pipeline.run(batch))
            if redeliver:
                before = run.snapshot()
                again = await run.pipeline.run(batch)
                assert run.snapshot() == before, "a redelivered batch changed the store"
                assert (again.work.counts["applied"], again.work.counts["merges"]) == (0, 0)

    asyncio.run(main())
    return run


def mismatches(run: Run, batches: list[list[Message]]) -> list[str]:
    """Every difference between the store and the oracle's truth of the same messages."""
    truth = oracle.expected([m.value for b in batches for m in b], now=datetime.now(UTC))
    state = run.state
    out: list[str] = []
    if set(state.blobs) != set(truth.profiles):
        ids, true_ids = set(state.blobs), set(truth.profiles)
        out.append(f"profile ids: extra {sorted(ids - true_ids)}, missing {sorted(true_ids - ids)}")
    for profile_id, want in sorted(truth.profiles.items()):
        if profile_id in state.blobs:
            got = render(decode(state.blobs[profile_id][1]), truth.as_of, RULES)
            out += oracle.differences(got, want)
    for anonymous_id, customer_id in sorted(truth.aliases.items()):
        served = state.profile(anonymous_id).profile
        if served is None or served.id != customer_id:
            out.append(f"get({anonymous_id}): got {served and served.id}, want {customer_id}")
    if state.aliases != truth.aliases:
        out.append(f"aliases: got {state.aliases}, want {truth.aliases}")
    watermark = max(state.watermarks.values(), default=0)
    if watermark != truth.as_of:
        out.append(f"watermark: got {watermark}, want {truth.as_of}")
    return out


def distinct_valid(batches: list[list[Message]]) -> int:
    values = [m.value for b in batches for m in b]
    return len({e["event_id"] for e in oracle.valid_events(values, now=datetime.now(UTC))})


# --- the simulated shop ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_simulated_shop_in_batches_matches_the_oracle(seed: int) -> None:
    rng = random.Random(seed)
    events = list(Shop(customers=40, days=14, seed=seed).events())
    records, reasons = with_duplicates_and_garbage(events, rng, duplicates=0.03, malformed=0.01)
    batches = cut(arrival_order(records, rng), rng, max_batch=rng.choice((8, 40, 150)))
    run = process(batches)

    assert run.state.aliases, "no visitor was linked: the stitching path went untested"
    assert mismatches(run, batches) == []
    assert run.total("applied") == distinct_valid(batches) == len(events)
    # each batch was run twice: its dead letters were published twice (at least once)
    assert Counter(d["reason"] for d in run.dead_letters()) == reasons + reasons


def test_redelivering_every_batch_after_the_stream_changes_nothing() -> None:
    rng = random.Random(7)
    events = list(Shop(customers=25, days=7, seed=7).events())
    batches = cut(arrival_order([Record(e, encode(e)) for e in events], rng), rng, 30)
    run = process(batches, redeliver=False)
    before = run.snapshot()

    async def again() -> None:
        for batch in batches:
            report = await run.pipeline.run(batch)
            assert (report.work.counts["applied"], report.work.counts["merges"]) == (0, 0)

    asyncio.run(again())
    assert run.snapshot() == before
    assert mismatches(run, batches) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_refetched_after_crashes_with_other_boundaries_match_the_oracle(seed: int) -> None:
    # A worker that dies before committing re-fetches from the last committed offset, and
    # the new fetch may cut the same messages into batches differently.
    rng = random.Random(seed)
    events = list(Shop(customers=40, days=14, seed=seed).events())
    stream = arrival_order([Record(e, encode(e)) for e in events], rng)
    run = Run()

    async def consume() -> None:
        committed = 0
        while committed < len(stream):
            size = rng.randint(1, 60)
            run.reports.append(await run.pipeline.run(stream[committed : committed + size]))
            if rng.random() < 0.5:  # else: killed before the commit
                committed += size

    asyncio.run(consume())
    assert mismatches(run, [stream]) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_begun_while_the_previous_one_is_written_match_the_oracle(seed: int) -> None:
    """The worker decides a batch while the one before it is published and written: its
    reads may come before that write (here they always do), so it starts from profiles
    the write is about to change, and its compare-and-set refuses and re-decides them."""
    rng = random.Random(seed)
    events = list(Shop(customers=40, days=14, seed=seed).events())
    records, _ = with_duplicates_and_garbage(events, rng, duplicates=0.03, malformed=0.01)
    batches = cut(arrival_order(records, rng), rng, max_batch=rng.choice((8, 40, 150)))
    run = Run(book=BOOK)

    async def overlapped() -> None:
        flight: asyncio.Future[BatchReport] | None = None
        for batch in batches:
            begun = await run.pipeline.begin(batch, previous=flight)
            if flight is not None:
                run.reports.append(await flight)
            flight = asyncio.ensure_future(run.pipeline.finish(begun))
        if flight is not None:
            run.reports.append(await flight)

    asyncio.run(overlapped())
    assert mismatches(run, batches) == []
    assert run.total("applied") == len(events)
    assert sum(r.retries["conflict"] for r in run.reports) > 0  # the race was exercised
    # What it published was decided on what was stored: the segment transitions leave
    # every customer where one batch after the other leaves them, none from a profile
    # that its write then refused.
    one_by_one = process(batches, redeliver=False, book=BOOK)
    # Each batch decided at the watermark running them one by one decides it at, though
    # it read the watermarks from before the previous batch's write.
    assert [r.decided_at for r in run.reports] == [r.decided_at for r in one_by_one.reports]
    published = segment_state(run)
    assert published == segment_state(one_by_one)
    assert {g % 2 for g in published.values()} == {0, 1}, "customers entered and left"


# --- focused cases ---------------------------------------------------------------------------


def ev(kind: str, minute: int, **fields: Any) -> Event:
    event: Event = {
        "event_id": fields.pop("event_id", f"{kind}-{minute}-{sorted(fields.items())}"),
        "type": kind,
        "timestamp": oracle.rfc3339(T0 + minute * oracle.MINUTE),
        "channel": "web",
    }
    event.update({k: fields.pop(k) for k in ("customer_id", "anonymous_id") if k in fields})
    if kind == "product_viewed" or kind == "product_added":
        fields = {"product_id": "P1", "category": "shoes", "price": 10.0, **fields}
    elif kind == "order_completed":
        item = {"product_id": "P1", "category": "shoes", "price": 10.0, "quantity": 1}
        fields = {"order_id": "O1", "revenue": 10.0, "currency": "EUR", "items": [item], **fields}
    if fields or kind == "page_viewed":
        event["properties"] = fields or {"url": "/"}
    return event


def in_order(*batches: list[Event]) -> list[list[Message]]:
    """Batches of events, each message on its key's partition of its topic, in the order given."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for batch in batches:
        messages = []
        for event in batch:
            key = key_of(event)
            where = (topic_of(event), partition_of(key))
            offsets[where] = offsets.get(where, -1) + 1
            messages.append(Message(*where, offsets[where], key.encode(), encode(event)))
        out.append(messages)
    return out


def test_a_visitor_identified_between_its_batches_is_merged_exactly() -> None:
    early = [
        ev("product_viewed", 0, anonymous_id="A"),
        ev("product_added", 1, anonymous_id="A", quantity=2),
        ev("page_viewed", 2, anonymous_id="A"),
    ]
    login = [
        ev("identify", 3, customer_id="C", anonymous_id="A"),
        ev("product_viewed", 4, customer_id="C", anonymous_id="A", product_id="P2"),
        ev("page_viewed", 2, anonymous_id="A", event_id="late-in-the-login-batch"),
    ]
    late = [ev("product_viewed", 1, anonymous_id="A", product_id="P3")]  # clickstream lagged
    batches = in_order(early, login, late)
    run = process(batches)
    assert mismatches(run, batches) == []
    customer = run.state.profile("A").profile
    assert customer is not None and customer.id == "C" and customer.events == 7
    assert set(run.state.blobs) == {"C"}  # the visitor's own profile is retired
    assert run.reports[1].work.counts["merges"] == 1


def test_the_first_link_of_a_visitor_wins() -> None:
    batches = in_order(
        [ev("page_viewed", 0, anonymous_id="A")],
        [ev("identify", 1, customer_id="C1", anonymous_id="A")],
        [
            ev("identify", 2, customer_id="C2", anonymous_id="A"),
            ev("page_viewed", 3, anonymous_id="A"),
            ev("identify", 4, customer_id="C2", anonymous_id="B"),
            ev("identify", 4, customer_id="C1", anonymous_id="B"),
            ev("page_viewed", 5, anonymous_id="B"),
        ],
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.state.aliases == {"A": "C1", "B": "C2"}


def test_an_identify_of_the_customer_as_its_own_visitor_links_nothing() -> None:
    batches = in_order([ev("identify", 0, customer_id="C", anonymous_id="C")])
    run = process(batches)
    assert run.state.aliases == {}
    assert mismatches(run, batches) == []


def test_a_client_duplicate_with_a_new_offset_counts_once() -> None:
    view = ev("product_viewed", 0, customer_id="C")
    order = ev("order_completed", 1, customer_id="C")
    batches = in_order([view, order, view], [order, view])
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.total("applied") == 2
    assert run.total("duplicates") == 3


def test_a_visitors_duplicate_arriving_with_the_login_counts_once() -> None:
    # The view reached the visitor's profile in batch 1; its client re-sent it, and the
    # copy arrives with the identify that merges that profile into the customer's.
    view = ev("product_viewed", 0, anonymous_id="A")
    batches = in_order([view], [ev("identify", 5, customer_id="C", anonymous_id="A"), view])
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.total("applied") == 2


def test_a_visitors_cart_is_checked_out_by_an_order_in_the_login_batch() -> None:
    batches = in_order(
        [ev("product_added", 0, anonymous_id="A")],
        [
            ev("identify", 5, customer_id="C", anonymous_id="A"),
            ev("order_completed", 6, customer_id="C", anonymous_id="A"),
        ],
    )
    run = process(batches)
    assert mismatches(run, batches) == []


def test_malformed_messages_come_back_as_dead_letters_with_their_reason() -> None:
    rng = random.Random(5)
    valid = ev("product_added", 0, anonymous_id="A")
    lines = [(kind, *malformed_event(rng, valid, kind)) for kind in MALFORMED_KINDS]
    messages = [
        Message("cdp.clickstream", 0, offset, b"A", raw) for offset, (_, raw, _) in enumerate(lines)
    ]
    messages.append(Message("cdp.clickstream", 0, len(lines), b"A", encode(valid)))
    run = process([messages], redeliver=False)
    (report,) = run.reports
    letters = run.dead_letters()
    assert [(d["offset"], d["reason"]) for d in letters] == [
        (offset, reason) for offset, (_, _, reason) in enumerate(lines)
    ]
    assert {d["reason"] for d in letters} <= set(validation.REASONS)
    assert all(d["topic"] == "cdp.clickstream" and d["key"] == "A" for d in letters)
    assert report.work.counts["applied"] == 1
    assert mismatches(run, [messages]) == []


# --- schedules -------------------------------------------------------------------------------


def test_a_profile_polled_because_it_came_due_leaves_the_schedule() -> None:
    """After every batch, nothing in the due schedules is at or below the watermark that
    batch decided at: each profile polled was decided and rescheduled past it, even when
    nothing fired or was labelled. (Before, such profiles were polled by every batch and,
    once a shard held ``due_limit`` of them, crowded out the ones due later.)"""
    settings = Settings(pseudonym_key="k" * 32)
    engine = Engine(
        RULES,
        Models(),
        labeler=ChurnLabeler.from_settings(settings),
        triggers=load_rules(""),
        trigger_lateness=60_000,
    )
    state, outlet = MemoryState(), MemoryOutlet()
    everything = Sharding(owned=lambda: (0,), shard_of=lambda profile_id: 0)
    pipe = ProfilePipeline(
        state, outlet, Stages(engine), partitions=3 * PARTITIONS, sharding=everything
    )
    shop = list(Shop(customers=40, days=60, seed=4).events())
    batches = cut(
        arrival_order([Record(e, encode(e)) for e in shop], random.Random(4)), random.Random(4), 200
    )
    polled = 0

    async def main() -> None:
        nonlocal polled
        for batch in batches:
            report = await pipe.run(batch)
            polled += len(report.due)
            stale = {
                (kind, profile_id, at)
                for kind, schedule in (("churn", state.churn_due), ("trigger", state.trigger_due))
                for shard in schedule.values()
                for profile_id, at in shard.items()
                if at <= report.decided_at
            }
            assert stale == set(), f"still due after a batch decided at {report.decided_at}"
            # Saved only for what came due: never more than were polled and saved.
            assert report.work.counts[DUE_ONLY] <= len(report.due & report.work.saved.keys())
        # Batches without events decide only what came due: every save is counted so.
        while True:
            report = await pipe.run([])
            assert report.work.counts[DUE_ONLY] == len(report.work.saved)
            due_only.append(report.work.counts[DUE_ONLY])
            if not report.work.saved:
                break

    due_only: list[int] = []
    asyncio.run(main())
    assert polled > 0  # the schedules were exercised
    assert sum(due_only) > 0


def test_saves_reach_the_metric_by_why_they_were_loaded() -> None:
    report = BatchReport()
    report.work.saved = {p: Profile(id=p) for p in ("A", "B", "C")}
    report.work.counts[DUE_ONLY] = 1

    def saved(cause: str) -> float:
        value = REGISTRY.get_sample_value("cdpulse_profiles_saved_total", {"cause": cause})
        return value or 0.0

    before = {cause: saved(cause) for cause in ("events", "due")}
    record_batch(report)
    assert {cause: saved(cause) - before[cause] for cause in before} == {"events": 2, "due": 1}


def test_transitions_the_sweep_saved_in_the_outbox_are_published_by_the_next_save() -> None:
    """The learner's RFM sweep saves its transitions in the profile's outbox before it
    publishes them: if it died in between, the profile's next save publishes them (again)
    and clears the outbox."""
    run = Run()
    swept = [b'{"transition_id":"C:loyal:2"}', b'{"transition_id":"C:at_risk:1"}']
    stored = Profile(id="C", customer_id="C", events=1, outbox=list(swept))
    run.state.blobs["C"] = (1, encode_profile(stored))
    asyncio.run(run.pipeline.run(in_order([ev("page_viewed", 1, customer_id="C")])[0]))
    assert run.outlet.values(Stream.SEGMENTS) == swept
    saved = decode(run.state.blobs["C"][1])
    assert saved.outbox == [] and saved.events == 2


def test_a_quiet_worker_learns_that_another_moved_the_shared_watermark() -> None:
    """Two workers share the store's watermarks: one whose partition went quiet finds out
    that the other's write moved the low watermark (so its idle timer runs the empty
    batches that decide what that made due), and sees nothing more once it decided there."""
    state, outlet = MemoryState(), MemoryOutlet()
    mine, theirs = (
        ProfilePipeline(state, outlet, Stages(Engine(RULES, Models())), partitions=2)
        for _ in range(2)
    )
    shop = [
        e for e in Shop(customers=6, days=3, seed=5).events() if topic_of(e) == "cdp.clickstream"
    ]
    half = len(shop) // 2

    def on(partition: int, events: list[Event]) -> list[Message]:
        return [
            Message("cdp.clickstream", partition, n, key_of(e).encode(), encode(e))
            for n, e in enumerate(events)
        ]

    async def main() -> None:
        await mine.run(on(0, shop[:half]))  # only its own partition reported: low is 0
        assert not await mine.shared_watermark_moved()
        report = await theirs.run(on(1, shop[half:]))  # both reported now
        assert report.low_watermark > 0
        assert await mine.shared_watermark_moved()
        await mine.run([])  # learns the shared marks: the next batch decides at them
        decided = await mine.run([])
        assert decided.decided_at == report.low_watermark
        assert not await mine.shared_watermark_moved()

    asyncio.run(main())


def test_segment_exits_of_an_analytics_refusal_are_dated_at_the_newest_event_seen() -> None:
    """A refusal resets the profile's ``last_seen`` (it keeps no activity): the exits it
    causes are dated at the newest event time the profile had seen, not at 1970, and so
    never before the entries they close (a segment's size by day would go negative)."""
    book = parse("rfm: false\nsegments:\n  - name: busy\n    when: events >= 2\n")
    state, outlet = MemoryState(), MemoryOutlet()
    pipe = ProfilePipeline(state, outlet, Stages(Engine(RULES, Models(), book=book)), partitions=2)

    def event(n: int, kind: str, at: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": f"e{n}",
            "type": kind,
            "timestamp": at,
            "customer_id": "C1",
            "channel": "web",
            "properties": properties,
        }

    views = [
        event(n, "page_viewed", f"2026-03-05T1{n}:00:00Z", {"url": f"https://shop.example/{n}"})
        for n in (0, 1)
    ]
    refusal = event(
        2, "consent_updated", "2026-03-04T10:00:00Z", {"purposes": {"analytics": False}}
    )

    async def main() -> None:
        for n, e in enumerate([*views, refusal]):
            topic = topic_of(e)
            await pipe.run([Message(topic, 0, n, b"C1", encode(e))])

    asyncio.run(main())
    moves = [json.loads(v) for v in outlet.values(Stream.SEGMENTS)]
    assert [(m["change"], m["at"]) for m in moves] == [
        ("entered", "2026-03-05T11:00:00.000Z"),
        ("left", "2026-03-05T11:00:00.000Z"),
    ]
