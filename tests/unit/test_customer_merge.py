"""Admin merges of two known customers (``customers_merged``, README: Identity rules)
through the batch pipeline and the in-memory store, against the oracle, each batch
re-delivered: exact once, the merged customer's later events follow the survivor, and
a merge of an id into itself, of an unknown id, a chain or a cycle is refused
(dead-lettered ``merge_refused``) and changes nothing."""

from __future__ import annotations

from typing import Any

from cdpulse.pipeline.identity import merge_refusal
from cdpulse.pipeline.state import Stored, View
from cdpulse.profile.model import Profile
from tests.unit.test_pipeline import BOOK, ev, in_order, mismatches, process, segment_state


def merge(minute: int, survivor: str, merged: str) -> dict[str, Any]:
    return ev(
        "customers_merged",
        minute,
        customer_id=survivor,
        merged_id=merged,
        requested_by="ops-admin",
        event_id=f"m{minute}",
    )


def refused(letters: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(event id, rule) of every merge_refused dead letter."""
    return [
        (d["event_id"], d["detail"].split("(", 1)[1].split(")", 1)[0])
        for d in letters
        if d["reason"] == "merge_refused"
    ]


def test_a_customer_merged_into_another_is_merged_once_and_its_events_follow() -> None:
    batches = in_order(
        [
            ev("order_completed", 0, customer_id="A"),
            ev("page_viewed", 1, anonymous_id="V"),
            ev("identify", 2, customer_id="B", anonymous_id="V", event_id="iB"),
            ev("order_completed", 3, customer_id="B", order_id="O2", revenue=30.0),
        ],
        [merge(4, "A", "B")],
        # after the merge: B's customer events, its visitor's and a new identify of B
        [
            ev("page_viewed", 5, customer_id="B"),
            ev("page_viewed", 6, anonymous_id="V"),
            ev("identify", 7, customer_id="B", anonymous_id="W", event_id="iB2"),
            ev("page_viewed", 8, anonymous_id="W"),
        ],
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert set(run.state.blobs) == {"A"}
    a = run.state.profile("A").profile
    assert a is not None and (a.customer_id, a.orders, a.merged_customers) == ("A", 2, ["B"])
    assert a.merged_from == ["B"]
    # every link is one hop, to the survivor; only B's is a customer link
    assert run.state.aliases == {"B": "A", "V": "A", "W": "A"}
    assert run.state.merged_into == {"B": "A"}
    assert run.total("customer_merges") == 1
    assert refused(run.dead_letters()) == []


def test_refused_merges_are_dead_lettered_with_their_rule_and_change_nothing() -> None:
    batches = in_order(
        [ev("page_viewed", 0, customer_id="A"), ev("page_viewed", 1, customer_id="B")],
        [ev("page_viewed", 2, customer_id="C"), ev("page_viewed", 3, anonymous_id="V")],
        [merge(4, "A", "A"), merge(5, "A", "nobody"), merge(6, "A", "V")],
        [merge(7, "A", "B")],
        [merge(8, "C", "B"), merge(9, "B", "C"), merge(10, "B", "A")],
        [merge(11, "A", "B")],  # the same merge again: nothing changes
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert refused(run.dead_letters()) == [
        ("m4", "self_merge"),
        ("m5", "unknown_customer"),
        ("m6", "unknown_customer"),  # a visitor is not a known customer
        ("m8", "chain"),
        ("m9", "survivor_merged"),
        ("m10", "cycle"),
    ]
    assert set(run.state.blobs) == {"A", "C", "V"}
    assert run.state.merged_into == {"B": "A"}
    assert run.total("customer_merges") == 1
    assert sum(run.total(f"merge_refused:{r}") for r in ("chain", "cycle")) == 2


def test_a_customer_with_merged_customers_merged_on_keeps_links_one_hop() -> None:
    batches = in_order(
        [ev("page_viewed", 0, customer_id=c) for c in ("A", "B", "C")],
        [merge(1, "B", "C")],
        [merge(2, "A", "B")],
        [ev("page_viewed", 3, customer_id="C"), ev("page_viewed", 4, customer_id="B")],
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.state.aliases == run.state.merged_into == {"B": "A", "C": "A"}
    a = run.state.profile("A").profile
    assert a is not None and sorted(a.merged_customers) == ["B", "C"] and a.events == 5


def test_a_customer_first_seen_in_the_merge_batch_is_merged_however_the_stream_is_cut() -> None:
    """Known is known whether the merged customer's first event was stored by an earlier
    batch or comes earlier in the merge's own batch: the outcome must not depend on
    where a (re-)fetch cut the stream. Its events before and after the merge follow the
    survivor; a merge before its first event is refused."""
    stream = [
        ev("order_completed", 0, customer_id="A"),
        ev("page_viewed", 1, customer_id="B"),
        ev("identify", 2, customer_id="B", anonymous_id="V", event_id="iB"),
        merge(3, "A", "B"),
        ev("page_viewed", 4, customer_id="B"),
        merge(5, "A", "C"),  # C's first event comes after: unknown
        ev("page_viewed", 6, customer_id="C"),
    ]
    outcomes = []
    for cut_at in range(len(stream) + 1):
        batches = in_order(*(part for part in (stream[:cut_at], stream[cut_at:]) if part))
        run = process(batches)
        assert mismatches(run, batches) == [], f"cut at {cut_at}"
        a = run.state.profile("A").profile
        assert a is not None
        letters = refused(run.dead_letters())
        outcomes.append((a.events, sorted(a.merged_customers), run.state.merged_into, letters))
    # each batch was delivered twice: the refusal was dead-lettered once all the same
    assert outcomes[0] == (4, ["B"], {"B": "A"}, [("m5", "unknown_customer")])
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_merge_rules_are_pure_and_decided_on_what_is_stored() -> None:
    view = View(profiles={"K": Stored(1, Profile(id="K", customer_id="K"))})
    visitor = View(profiles={"V": Stored(1, Profile(id="V"))})
    assert merge_refusal("S", "S", {}, view) == "self_merge"
    assert merge_refusal("S", "K", {}, view) is None
    assert merge_refusal("S", "V", {}, visitor) == "unknown_customer"
    assert merge_refusal("S", "K", {"K": "S"}, view) is None  # made already: a no-op
    assert merge_refusal("S", "K", {"K": "T"}, view) == "chain"
    assert merge_refusal("S", "K", {"S": "K"}, view) == "cycle"
    assert merge_refusal("S", "K", {"S": "T"}, view) == "survivor_merged"


def test_the_merged_customer_leaves_its_segments_and_the_survivor_decides_its_own() -> None:
    order = {"order_id": "O", "revenue": 10.0}
    batches = in_order(
        [ev("order_completed", 0, customer_id="A", **order)],
        [ev("order_completed", n, customer_id="B", order_id=f"O{n}") for n in (1, 2)],
        [merge(3, "A", "B")],
    )
    run = process(batches, book=BOOK)
    assert mismatches(run, batches) == []
    # B was a repeat buyer (generation 1): it leaves (2); A, with B's orders, enters
    assert segment_state(run) == {("B", "repeat_buyer"): 2, ("A", "repeat_buyer"): 1}
    assert run.state.members["repeat_buyer"] == {"A"}
    assert set(run.state.summaries) == {"A"}  # B's lifetime-value summary went with it
