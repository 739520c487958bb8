"""The identity rules (README: Identity rules) through the batch pipeline and the
in-memory store, against the oracle, in both orders, each batch re-delivered.

A known customer is an id some event uses as ``customer_id``; a link whose visitor is a
known customer is refused (dead-lettered ``identity_refused``) and the identify is
applied to its customer without it; a visitor linked to another customer stays there.
"""

from __future__ import annotations

from tests.unit.test_pipeline import ev, in_order, mismatches, process


def refused(run_letters: list[dict[str, object]]) -> list[tuple[object, str]]:
    """(event id, rule) of every identity_refused dead letter."""
    out = []
    for letter in run_letters:
        if letter["reason"] == "identity_refused":
            detail = str(letter["detail"])
            out.append((letter["event_id"], detail.split("(", 1)[1].split(")", 1)[0]))
    return out


def identify(minute: int, customer: str, visitor: str) -> dict[str, object]:
    return ev("identify", minute, customer_id=customer, anonymous_id=visitor, event_id=f"i{minute}")


def test_a_known_customer_used_as_anonymous_id_is_not_merged_away_customer_first() -> None:
    batches = in_order(
        [ev("order_completed", 0, customer_id="C2"), ev("page_viewed", 1, customer_id="C2")],
        [identify(2, "C1", "C2")],
        [ev("page_viewed", 3, customer_id="C2"), ev("page_viewed", 4, anonymous_id="C2")],
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.state.aliases == {}
    assert set(run.state.blobs) == {"C1", "C2"}
    c2 = run.state.profile("C2").profile
    assert c2 is not None and (c2.id, c2.orders, c2.events) == ("C2", 1, 4)
    c1 = run.state.profile("C1").profile
    assert c1 is not None and c1.anonymous_ids == [] and c1.identified_at is not None
    # re-delivered: dead-lettered once, not again when its customer applied it already
    assert refused(run.dead_letters()) == [("i2", "known_customer")]
    assert sum(r.identity_refused["known_customer"] for r in run.reports) == 1


def test_a_known_customer_used_as_anonymous_id_in_the_same_batch_is_not_linked() -> None:
    # the customer's own event comes after the identify, in the same batch
    batches = in_order(
        [identify(0, "C1", "C2"), ev("order_completed", 1, customer_id="C2")],
    )
    run = process(batches)
    assert mismatches(run, batches) == []
    assert run.state.aliases == {}
    assert refused(run.dead_letters()) == [("i0", "known_customer")]


def test_a_visitor_linked_then_used_as_customer_id_becomes_its_own_customer() -> None:
    # The other order: V was only a visitor when linked, so the link was made and its
    # past merged into C1. Its customer events never go to C1: its own profile, whose
    # save removes the link; its later anonymous events follow.
    batches = in_order(
        [ev("page_viewed", 0, anonymous_id="V")],
        [identify(1, "C1", "V")],
        [ev("order_completed", 2, customer_id="V")],
        [ev("page_viewed", 3, anonymous_id="V"), identify(4, "C3", "V")],
    )
    run = process(batches)
    assert run.state.aliases == {}
    c1, v = run.state.profile("C1").profile, run.state.profile("V").profile
    assert c1 is not None and (c1.events, c1.orders, c1.merged_from) == (2, 0, ["V"])
    assert v is not None and (v.id, v.customer_id, v.events, v.orders) == ("V", "V", 2, 1)
    assert refused(run.dead_letters()) == [("i4", "known_customer")]


def test_an_identify_cycle_is_refused() -> None:
    # In one batch both ids are customers: neither link is made.
    together = in_order([identify(0, "A", "B"), identify(1, "B", "A")])
    run = process(together)
    assert mismatches(run, together) == []
    assert run.state.aliases == {}
    both = [("i0", "known_customer"), ("i1", "known_customer")]
    assert sorted(refused(run.dead_letters())) == both
    # One after the other: B was a visitor when linked; closing the loop is refused, and
    # B, now a customer, is unlinked: no id is left linked.
    apart = in_order([identify(0, "A", "B")], [identify(1, "B", "A")])
    run = process(apart)
    assert run.state.aliases == {}
    assert refused(run.dead_letters()) == [("i1", "known_customer")]
    b = run.state.profile("B").profile
    assert b is not None and (b.id, b.customer_id, b.anonymous_ids) == ("B", "B", [])


def test_a_chain_through_a_customer_is_refused() -> None:
    # V -> C is a link; W -> V would chain through V, which an identify made a customer.
    batches = in_order(
        [identify(0, "C", "V"), ev("page_viewed", 0, anonymous_id="W")],
        [identify(1, "V", "W")],
    )
    run = process(batches)
    assert refused(run.dead_letters()) == []
    # V used as customer_id: its link goes, W links to V, one hop
    assert run.state.aliases == {"W": "V"}
    # W -> C would chain V and W through C, a customer: refused. V -> D after V -> C is
    # a first-link-wins conflict (a shared device): not dead-lettered, counted.
    chained = in_order([identify(0, "C", "V")], [identify(1, "W", "C"), identify(2, "D", "V")])
    run = process(chained)
    assert run.state.aliases == {"V": "C"}
    assert refused(run.dead_letters()) == [("i1", "known_customer")]
    assert sum(r.link_conflicts for r in run.reports) == 1
    assert mismatches(run, chained) == []
