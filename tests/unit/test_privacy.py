"""Privacy by construction, without I/O: pseudonyms, the trait allow-list and every cell
of the consent matrix (README: Privacy and security)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from cdpulse.contract.message import Message
from cdpulse.contract.mirror import from_dict
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.models.churn.scoring import ChurnScoring, profile_document
from cdpulse.pipeline.batch import ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.privacy.consent import PURPOSES, allows
from cdpulse.privacy.ledger import MemoryLedger, read_erased_at
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile.model import Profile, encode
from cdpulse.profile.rules import Rules, apply, merge, new_profile
from cdpulse.profile.view import render
from cdpulse.profile.windows import DAY
from tests import oracle

RULES = Rules(traits=TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY)))
T0 = 1_767_225_600_000
NOW = datetime(2026, 11, 26, tzinfo=UTC)
EMAIL = "Alice.Doe@Example.com"


def event(n: int, kind: str, properties: dict[str, Any], **ids: str) -> dict[str, Any]:
    ids = ids or {"customer_id": "C-1"}
    return {
        "event_id": f"e{n}",
        "type": kind,
        "timestamp": T0 + n * 1000,
        "channel": "web",
        "properties": properties,
        **ids,
    }


def view(n: int, **ids: str) -> dict[str, Any]:
    props = {"product_id": f"P-{n % 3}", "category": "shoes", "price": 10.0}
    return event(n, "product_viewed", props, **ids)


def consent(n: int, **purposes: bool) -> dict[str, Any]:
    return event(n, "consent_updated", {"purposes": purposes})


def identify(n: int, traits: dict[str, Any]) -> dict[str, Any]:
    return event(n, "identify", {"traits": traits}, customer_id="C-1", anonymous_id="A-1")


def applied(*events: dict[str, Any]) -> Profile:
    profile = new_profile("C-1")
    for e in events:
        apply(profile, from_dict(e), RULES)
    return profile


# --- pseudonyms and traits -----------------------------------------------------------------


def test_personal_traits_are_kept_only_as_keyed_pseudonyms() -> None:
    profile = applied(identify(1, {"email": EMAIL, "phone": "+49 (30) 1234-5", "country": "DE"}))
    traits = {name: value for name, (_, value) in profile.traits.items()}
    assert traits["email"] == oracle.pseudonym("email", EMAIL)
    assert traits["phone"] == oracle.pseudonym("phone", "+4930 12345")
    assert traits["country"] == "DE"
    blob = encode(profile)
    assert EMAIL.lower().encode() not in blob and b"12345" not in blob


def test_pseudonyms_depend_on_the_key() -> None:
    a, b = Pseudonymizer(b"key-a"), Pseudonymizer(b"key-b")
    assert a.pseudonym("email", EMAIL) != b.pseudonym("email", EMAIL)
    assert a.pseudonym("email", "x") != a.pseudonym("phone", "x")
    assert "key-a" not in repr(a)


def test_traits_off_the_allow_list_are_dropped_and_counted() -> None:
    profile = applied(identify(1, {"email": EMAIL, "shoe_size": 42, "birthday": "1990-01-01"}))
    assert set(profile.traits) == {"email"}
    assert RULES.traits.dropped({"email": EMAIL, "shoe_size": 42, "birthday": "x"}) == 2


def test_an_already_pseudonymised_trait_is_not_hashed_twice() -> None:
    pseudonym = oracle.pseudonym("email", EMAIL)
    profile = applied(identify(1, {"email": pseudonym}))
    assert profile.traits["email"][1] == pseudonym


def test_traits_merge_newest_first_whatever_the_order() -> None:
    older, newer = identify(1, {"country": "DE"}), identify(2, {"country": "FR"})
    assert applied(older, newer).traits == applied(newer, older).traits
    visitor = applied(newer)
    customer = applied(older)
    merge(customer, visitor, RULES)
    assert customer.traits["country"][1] == "FR"


# --- consent: defaults -----------------------------------------------------------------------


def test_defaults_grant_analytics_and_personalization_but_not_marketing() -> None:
    assert [allows(new_profile("C-1"), p) for p in PURPOSES] == [True, True, False]
    assert [allows(None, p) for p in PURPOSES] == [True, True, False]


def test_an_unknown_purpose_is_an_error_that_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown consent purpose 'ads'.*marketing"):
        allows(new_profile("C-1"), "ads")  # type: ignore[arg-type]


def test_the_newest_consent_decides() -> None:
    profile = applied(consent(1, marketing=True), consent(2, marketing=False))
    assert not allows(profile, "marketing")
    assert allows(applied(consent(2, marketing=True), consent(1, marketing=False)), "marketing")


# --- consent: analytics ----------------------------------------------------------------------


def test_analytics_granted_keeps_the_behaviour() -> None:
    profile = applied(consent(1, analytics=True), view(2), view(3))
    assert profile.events == 3 and profile.viewed and profile.buckets


def test_analytics_withheld_keeps_only_what_honouring_the_request_needs() -> None:
    profile = applied(view(1), identify(2, {"email": EMAIL}), consent(3, analytics=False), view(4))
    assert (profile.events, profile.counts, profile.viewed, profile.buckets) == (0, {}, {}, {})
    assert (profile.spans, profile.affinity, profile.churn_days) == ([], {}, {})
    assert profile.consent["analytics"][1] is False
    assert set(profile.traits) == {"email"} and profile.anonymous_ids == ["A-1"]
    # the exactly-once bookkeeping stays: a re-delivered event is still a duplicate
    assert not apply(profile, from_dict(view(4)), RULES)


@pytest.mark.parametrize(
    ("order", "counted"),
    [
        ((1, 2, 3, 5, 6), 2),  # the grant arrives last: only what follows it counts
        ((5, 1, 2, 3, 6), 5),  # the grant arrives first: the older refusal never applies
    ],
)
def test_analytics_granted_again_counts_only_what_follows_and_the_oracle_agrees(
    order: tuple[int, ...], counted: int
) -> None:
    # Withholding analytics discards the past for good (minimised), so a later grant
    # depends on arrival order: the oracle models it in processing order. Found in the
    # hostile chaos test, where one customer's refusal and later grant came from two
    # producers.
    by_n = {
        1: view(1),
        2: consent(2, analytics=False),
        3: view(3),
        5: consent(5, analytics=True),
        6: view(6),
    }
    events = [by_n[n] for n in order]
    profile = applied(*events)
    truth = oracle.expected(events, now=NOW)
    assert profile.events == counted
    assert oracle.differences(render(profile, truth.as_of, RULES), truth.profiles["C-1"]) == []


def test_analytics_withheld_by_a_visitor_minimises_the_merged_customer() -> None:
    customer = applied(view(1), view(2))
    visitor = new_profile("A-1")
    apply(visitor, from_dict(consent(3, analytics=False)), RULES)
    merge(customer, visitor, RULES)
    assert customer.events == 0 and customer.viewed == {}


# --- consent: personalization ----------------------------------------------------------------


class _Model:
    examples = 10

    def predict_proba(self, x: Any) -> float:
        return 0.75

    def reasons(self, x: Any) -> list[str]:
        return ["quiet lately"]


SNAPSHOT: Any = SimpleNamespace(model=_Model(), version=3)


@pytest.mark.parametrize("granted", [True, False])
def test_churn_scoring_needs_personalization(granted: bool) -> None:
    profile = applied(view(1), consent(2, personalization=granted))
    profile.churn_risk = 0.5  # a score from before the withdrawal must not survive it
    scoring = ChurnScoring(ChurnLabeler(), lambda: SNAPSHOT)
    scoring.after_profile(profile, 0, T0 + 3000)
    assert profile.churn_risk == (0.75 if granted else None)
    document = profile_document(profile, T0 + 3000, RULES, SNAPSHOT)
    assert (document["churn"] is None) is (not granted)
    assert (document["clv"] is None) is (not granted)


def pipeline(state: MemoryState, outlet: MemoryOutlet, erasures: Any = None) -> ProfilePipeline:
    engine = Engine(RULES, Models(), item_events=True, pseudonym=RULES.traits.pseudonymizer.of_id)
    return ProfilePipeline(state, outlet, Stages(engine), partitions=1, erasures=erasures)


def messages(events: list[dict[str, Any]], start: int = 0) -> list[Message]:
    return [
        Message("customers", 0, start + i, b"C-1", json.dumps(e).encode())
        for i, e in enumerate(events)
    ]


def _item_events(*events: dict[str, Any]) -> list[bytes]:
    outlet = MemoryOutlet()
    asyncio.run(pipeline(MemoryState(), outlet).run(messages(list(events))))
    return outlet.values(Stream.RECO_EVENTS)


@pytest.mark.parametrize(
    ("purposes", "learns"),
    [
        ({"personalization": True}, True),
        ({"personalization": False}, False),
        ({"analytics": False}, False),
        ({"marketing": False}, True),
        ({"marketing": True}, True),
    ],
)
def test_the_recommender_learns_only_with_personalization_and_analytics(
    purposes: dict[str, bool], learns: bool
) -> None:
    items = _item_events(consent(1, **purposes), view(2), view(3))
    assert len(items) == (2 if learns else 0)


@pytest.mark.parametrize("granted", [True, False])
def test_recommendation_lists_need_personalization(granted: bool) -> None:
    # Lists are published by the recommender's learner for the customers whose item
    # events it learns, and only consenting customers' item events reach it.
    items = _item_events(consent(1, personalization=granted), view(2))
    assert len(items) == (1 if granted else 0)
    for raw in items:
        assert json.loads(raw)["customer_id"] == RULES.traits.pseudonymizer.of_id("C-1")


def _training(batches: list[list[Message]]) -> list[dict[str, Any]]:
    """The churn examples a pipeline (two input partitions) publishes for ``batches``."""
    engine = Engine(
        RULES,
        Models(),
        labeler=ChurnLabeler(horizon=2 * DAY, interval=DAY, lateness=0),
        pseudonym=lambda profile_id: profile_id,
    )
    outlet = MemoryOutlet()
    everything = Sharding(owned=lambda: (0,), shard_of=lambda profile_id: 0)  # polls due ones
    pipe = ProfilePipeline(MemoryState(), outlet, Stages(engine), partitions=2, sharding=everything)

    async def main() -> None:
        for batch in [*batches, []]:  # the idle batch decides at the last low watermark
            await pipe.run(batch)

    asyncio.run(main())
    return [json.loads(raw) for raw in outlet.values(Stream.TRAINING)]


@pytest.mark.parametrize("watermark_day", [1, 5, 9])
def test_withdrawing_analytics_decides_the_labels_due_by_then_whatever_the_watermark(
    watermark_day: int,
) -> None:
    """Withdrawing analytics minimises the profile, its activity days with it: the
    labels decidable at the withdrawal's event time are decided first, so a low
    watermark (live, several partitions) and a high one (a replay) publish the same
    labels once the watermark passes them; none after it. (Before, the labels still
    waiting for the watermark were lost live and kept by a replay.)"""
    day = DAY // 1000

    def other(offset: int, n: int) -> Message:
        e = event(n, "page_viewed", {"url": "/"}, anonymous_id="A-9")
        return Message(
            "customers", 1, offset, b"A-9", json.dumps({**e, "event_id": f"a{n}"}).encode()
        )

    active = [view(d * day) for d in (0, 1, 4)]
    withdrawal = consent(10 * day, analytics=False)
    # The other partition holds the watermark at ``watermark_day`` until the withdrawal
    # came, then moves it past every label.
    batches = [[*messages(active), other(0, watermark_day * day)], [other(1, watermark_day * day)]]
    batches += [messages([withdrawal], start=len(active)), [other(2, 12 * day)]]
    published = _training(batches)

    profile = applied(*active)
    labeler = ChurnLabeler(horizon=2 * DAY, interval=DAY, lateness=0)
    want, _ = labeler.decide(profile, T0 + 10 * DAY, lambda d: [0.0])
    assert [(e["snapshot_at"], e["label"]) for e in published] == [
        (e.snapshot_at, e.label) for e in want
    ]
    assert len(want) >= 3  # the case has labels to lose


def test_labels_held_at_a_withdrawal_reach_the_topic_in_decision_order() -> None:
    """A withdrawal decides its customer's labels up to its own event time, ahead of a
    watermark another partition holds back: they wait on the profile until the watermark
    passes them, so the topic holds every label in decision order, as one batch with the
    watermark at the end decides them (a replay), and a learner learns them in the same
    order live and replayed."""
    day = DAY // 1000

    def on(partition: int, offset: int, e: dict[str, Any]) -> Message:
        key = e["customer_id"].encode()
        return Message("customers", partition, offset, key, json.dumps(e).encode())

    def other(n: int) -> dict[str, Any]:
        return {**view(n, customer_id="C-2"), "event_id": f"c2-{n}"}

    first = [on(0, i, view(d * day)) for i, d in enumerate((0, 1, 4))]
    first += [on(1, i, other(d * day)) for i, d in enumerate((0, 1))]
    withdrawal = [on(0, 3, consent(10 * day, analytics=False))]
    later = [[on(1, 2, other(8 * day))], [on(1, 3, other(12 * day))]]
    live = _training([first, withdrawal, *later])
    replayed = _training([[*first, *withdrawal, *later[0], *later[1]], []])

    def order(e: dict[str, Any]) -> tuple[int, str, int]:
        return (e["label_at"], e["profile_id"], e["snapshot_at"])

    assert live == replayed == sorted(replayed, key=order)
    customers = {e["profile_id"] for e in live}
    assert customers == {"C-1", "C-2"}  # the case interleaves two customers' labels
    withdrawn = max(e["label_at"] for e in live if e["profile_id"] == "C-1")
    assert any(e["label_at"] < withdrawn for e in live if e["profile_id"] == "C-2")


def test_a_refusal_read_before_earlier_orders_decides_the_same_labels() -> None:
    """The refusal is on the customers topic, the customer's earlier order on the orders
    topic: Kafka may hand over the refusal first. The labels decided by the refusal's
    time read the order all the same (the days before the refusal wait for the
    watermark), so they equal the labels of the stream in time order."""
    day = DAY // 1000
    item = {"product_id": "P-1", "category": "shoes", "price": 10.0, "quantity": 1}
    bought = event(
        3 * day,
        "order_completed",
        {"order_id": "O-1", "revenue": 10.0, "currency": "EUR", "items": [item]},
    )

    def on(topic: str, offset: int, e: dict[str, Any]) -> Message:
        return Message(topic, 0, offset, b"C-1", json.dumps(e).encode())

    views = [on("customers", i, view(d * day)) for i, d in enumerate((0, 1))]
    refusal = on("customers", 2, consent(5 * day, analytics=False))
    order = on("orders", 0, bought)
    later = on("orders", 1, {**bought, "event_id": "o2", "timestamp": T0 + 9 * DAY})
    in_time = _training([[*views], [order], [refusal], [later]])
    refusal_first = _training([[*views, refusal], [order], [later]])

    assert refusal_first == in_time
    assert [(e["snapshot_at"] - T0) // DAY for e in in_time if e["label"] == 0] == [0, 1, 2]


# --- consent: marketing ----------------------------------------------------------------------


@pytest.mark.parametrize("granted", [True, False])
def test_marketing_is_answered_by_allows_and_changes_nothing_else(granted: bool) -> None:
    profile = applied(consent(1, marketing=granted), view(2))
    assert allows(profile, "marketing") is granted
    assert allows(profile, "analytics") and allows(profile, "personalization")
    assert profile.events == 2


# --- erasure in the batch processor ----------------------------------------------------------


class _Erasures:
    """The ledger in memory, and an eraser that deletes from the memory state; it notes
    which ledger entries the outlet had been given when each erasure was carried out."""

    def __init__(self, state: MemoryState, outlet: MemoryOutlet) -> None:
        self.state = state
        self.outlet = outlet
        self.ledger = MemoryLedger(RULES.traits.pseudonymizer)
        self.requests: list[tuple[str, str]] = []
        self.published_before: list[set[bytes | None]] = []

    async def find(self, profile_id: str, also: list[str]) -> Any:
        linked = [a for a, c in self.state.aliases.items() if c == profile_id]
        ids = sorted({profile_id, *linked, *also})
        names = RULES.traits.pseudonymizer
        return SimpleNamespace(
            customer=profile_id, ids=ids, pseudonyms=[names.of_id(i) for i in ids]
        )

    async def erase(
        self, targets: Any, requested_by: str, event_id: str, at: int, erased_at: int
    ) -> Any:
        self.requests.append((targets.customer, requested_by))
        self.published_before.append({r.key for r in self.outlet.sent.get(Stream.ERASURES, [])})
        await self.ledger.record(targets.ids, erased_at)
        for i in targets.ids:
            self.state.blobs.pop(i, None)
            self.state.aliases.pop(i, None)
            self.state.erased.add(i)
        return SimpleNamespace(
            ids=targets.ids,
            subject=RULES.traits.pseudonymizer.of_id(targets.customer),
            audit_json=lambda: b"{}",
        )


def test_an_erasure_drops_the_batchs_events_of_its_ids_and_every_later_one() -> None:
    state, outlet = MemoryState(), MemoryOutlet()
    erasures = _Erasures(state, outlet)
    run = pipeline(state, outlet, erasures)
    earlier = [view(1, anonymous_id="A-0"), identify(2, {"email": "x@y.z"})]
    asyncio.run(run.run(messages(earlier)))
    assert state.aliases == {"A-1": "C-1"}
    erase = event(5, "erasure_requested", {"requested_by": "dpo"})
    batch = [view(3), identify(4, {"email": EMAIL}), erase, view(6)]
    report = asyncio.run(run.run(messages(batch, 10)))
    assert erasures.requests == [("C-1", "dpo")]
    assert "C-1" not in state.blobs and state.aliases == {}
    # nothing computed about them in this batch leaves the worker; tombstones and the
    # forget record do
    assert report.work.saved == {} and report.suppressed == 3
    assert outlet.values(Stream.TRAINING) == []
    forgets = [json.loads(v) for v in outlet.values(Stream.RECO_EVENTS) if b"forget" in v]
    pseudonyms = RULES.traits.pseudonymizer
    assert {f["forget"] for f in forgets} == {pseudonyms.of_id("C-1"), pseudonyms.of_id("A-1")}
    assert {r.key for r in outlet.sent[Stream.SEGMENTS]} == {b"A-1", b"C-1"}
    # replayed, its events stay dropped
    replay = asyncio.run(run.run(messages([view(1, anonymous_id="A-1"), view(7)], 20)))
    assert replay.suppressed == 2 and "C-1" not in state.blobs


def test_an_erasure_puts_its_ledger_entries_on_the_topic_before_erasing_anything() -> None:
    state, outlet = MemoryState(), MemoryOutlet()
    erasures = _Erasures(state, outlet)
    run = pipeline(state, outlet, erasures)
    asyncio.run(run.run(messages([view(1), identify(2, {"email": "x@y.z"})])))
    names = RULES.traits.pseudonymizer
    wanted = {names.of_id("C-1").encode(), names.of_id("A-1").encode()}
    erase = event(5, "erasure_requested", {"requested_by": "dpo"})
    again = event(6, "erasure_requested", {"requested_by": "dpo"}) | {"event_id": "e6b"}

    # The broker does not acknowledge: the batch fails with nothing recorded or erased.
    outlet.fail_next = 1
    with pytest.raises(ConnectionError):
        asyncio.run(run.run(messages([erase, again], 10)))
    assert erasures.requests == [] and erasures.ledger.entries == {}
    assert "C-1" in state.blobs and state.aliases == {"A-1": "C-1"}

    before = int(datetime.now(UTC).timestamp() * 1000)
    asyncio.run(run.run(messages([erase, again], 10)))
    ledger = outlet.sent[Stream.ERASURES]
    # One entry per id for the batch, though two requests name the customer; keyed by
    # pseudonym, never by id, and every erasure saw them all published first.
    assert sorted(r.key for r in ledger) == sorted(wanted)
    assert erasures.published_before == [wanted, wanted]
    for record in ledger:
        assert record.value is not None
        assert before <= read_erased_at(record.value) <= datetime.now(UTC).timestamp() * 1000
    assert set(erasures.ledger.entries) == {k.decode() for k in wanted}
    assert set(erasures.ledger.entries.values()) == {read_erased_at(ledger[0].value or b"")}
