"""The api's kept recommendation lists (``app/views.py`` ``ServedLists``): a kept list is
the one the snapshot computes for the same customer, context and ``k``, never one of an
older snapshot or another context."""

from __future__ import annotations

from cdpulse.app.views import ServedLists
from cdpulse.models.reco import Context
from cdpulse.models.reco.recommender import Recommendation
from cdpulse.models.reco_stream import RecoSnapshot
from tests.unit.test_reco import learn_sharded, shop_events

SHOES = Context(affinity={"shoes": 2.0}, recently_viewed=("P-3",))
BOOKS = Context(affinity={"books": 1.0}, recently_viewed=("P-1",), cart=("P-2",))


def _snapshots() -> tuple[RecoSnapshot, RecoSnapshot]:
    """Two served snapshots of one learner: before and after the shop's last day."""
    events = shop_events()
    (learner,) = learn_sharded(events[: len(events) * 2 // 3], 1)
    first = RecoSnapshot(1, learner, 0).served()
    for event in events[len(events) * 2 // 3 :]:
        learner.learn_one(event["customer_id"], event)
    return first, RecoSnapshot(2, learner, 0).served()


def test_a_kept_list_is_the_list_of_its_snapshot_customer_context_and_k() -> None:
    first, second = _snapshots()
    lists = ServedLists(100)
    reads = [
        (first, "C-1", SHOES, 10),
        (first, "C-1", SHOES, 10),  # kept
        (first, "C-1", BOOKS, 10),  # the cart and views changed
        (first, "C-1", SHOES, 3),
        (first, "C-2", SHOES, 10),
        (second, "C-1", SHOES, 10),  # a new snapshot
        (second, "C-1", SHOES, 10),
        (first, "C-1", SHOES, 10),  # an older one served again: computed again
    ]
    for snapshot, customer, context, k in reads:
        expected = snapshot.recommender.recommend(f"hmac:{customer}", context, k=k)
        assert lists.recommend(snapshot, customer, f"hmac:{customer}", context, k) == expected
    # each read that must not be served a kept list asks for a list of its own
    c1 = [first.recommender.recommend("hmac:C-1", c, k=k) for c, k in [(SHOES, 10), (BOOKS, 10)]]
    assert c1[0] != c1[1] and c1[0] != second.recommender.recommend("hmac:C-1", SHOES)


def test_a_list_is_computed_once_while_kept_and_the_least_recently_read_goes_first() -> None:
    first, _ = _snapshots()
    lists = ServedLists(2)

    def read(customer: str, context: Context = SHOES) -> list[Recommendation]:
        return lists.recommend(first, customer, f"hmac:{customer}", context, 10)

    one = read("C-1")
    assert read("C-1") is one  # kept: the very list
    two = read("C-2")
    assert read("C-1") is one  # C-1 read last: C-2 is the least recently read
    read("C-3")  # evicts C-2
    assert read("C-2") is not two and read("C-2") == two
    assert read("C-1", BOOKS) is not read("C-1", SHOES)


def test_no_list_kept_at_capacity_zero() -> None:
    first, _ = _snapshots()
    lists = ServedLists(0)
    one = lists.recommend(first, "C-1", "hmac:C-1", SHOES, 10)
    assert lists.recommend(first, "C-1", "hmac:C-1", SHOES, 10) is not one
    assert lists.recommend(first, "C-1", "hmac:C-1", SHOES, 10) == one
