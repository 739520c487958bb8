"""The profile rules against hand-derived numbers and against the oracle.

Focused cases pin each field's definition; the hypothesis properties pin what makes the
engine exact: order does not matter (events of one customer arrive over three topics),
stitching an anonymous visitor in by ``merge`` equals having seen one profile all along,
and a re-delivered message changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.contract.mirror import Event
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.contract.validation import Rejection, validate
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile.model import Profile, encode
from cdpulse.profile.rules import Rules, apply, merge, new_profile
from cdpulse.profile.view import iso, render
from tests import oracle

NOW = datetime(2026, 11, 26, tzinfo=UTC)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE, HOUR, DAY = oracle.MINUTE, oracle.HOUR, oracle.DAY
# The oracle pseudonymises personal traits under this key too.
RULES = Rules(traits=TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY)))
CUSTOMER, VISITOR = "C-1", "a-1"

_ids = count()


def ev(kind: str, t: int, *, anonymous: bool = False, **properties: Any) -> dict[str, Any]:
    """A valid event of ``kind`` at ``t`` (epoch ms) by the customer, or by the visitor."""
    event: dict[str, Any] = {
        "event_id": f"e{next(_ids)}",
        "type": kind,
        "timestamp": t,
        "channel": properties.pop("channel", "web"),
    }
    if anonymous:
        event["anonymous_id"] = VISITOR
    else:
        event["customer_id"] = CUSTOMER
    if kind == "identify":
        event["anonymous_id"] = properties.pop("anonymous_id", VISITOR)
    if properties:
        event["properties"] = properties
    return event


def view(t: int, product: str, category: str = "shoes", **kw: Any) -> dict[str, Any]:
    return ev("product_viewed", t, product_id=product, category=category, price=10.0, **kw)


def add(t: int, product: str, quantity: int = 1, price: float = 10.0, **kw: Any) -> dict[str, Any]:
    properties = {"product_id": product, "category": "shoes", "price": price, **kw}
    return ev("product_added", t, quantity=quantity, **properties)


def remove(t: int, product: str, quantity: int = 1) -> dict[str, Any]:
    return ev("product_removed", t, product_id=product, quantity=quantity)


def order(t: int, revenue: float, *categories: str) -> dict[str, Any]:
    items = [
        {"product_id": f"P-{c}", "category": c, "price": 1.0, "quantity": 1}
        for c in categories or ("shoes",)
    ]
    return ev("order_completed", t, order_id=f"O-{t}", revenue=revenue, currency="EUR", items=items)


def consent(t: int, **purposes: bool | None) -> dict[str, Any]:
    return ev("consent_updated", t, purposes=purposes)


def parsed(event: dict[str, Any]) -> Event:
    result = validate(event, now=NOW)
    assert not isinstance(result, Rejection), result
    return result


def applied(events: list[dict[str, Any]], profile_id: str = CUSTOMER) -> Profile:
    profile = new_profile(profile_id)
    for event in events:
        apply(profile, parsed(event), RULES)
    return profile


def newest(events: list[dict[str, Any]]) -> int:
    return max(oracle.millis(e["timestamp"]) for e in events)


def rendered(events: list[dict[str, Any]], as_of: int | None = None) -> dict[str, Any]:
    """The engine's render, checked field by field against the oracle before it is returned."""
    as_of = newest(events) if as_of is None else as_of
    got = render(applied(events), as_of, RULES)
    assert oracle.differences(got, oracle.profile(CUSTOMER, events, as_of)) == []
    return got


# --- sessions ------------------------------------------------------------------------------


def test_a_gap_of_exactly_the_session_gap_continues_the_session_one_ms_more_ends_it() -> None:
    events = [ev("page_viewed", T0, url="/"), ev("page_viewed", T0 + 30 * MINUTE, url="/")]
    assert rendered(events)["sessions"] == 1
    events.append(ev("page_viewed", T0 + 60 * MINUTE + 1, url="/"))
    assert rendered(events)["sessions"] == 2


def test_only_clickstream_makes_sessions() -> None:
    events = [
        ev("page_viewed", T0, url="/"),
        ev("email_opened", T0 + 20 * MINUTE, campaign_id="n1"),
        consent(T0 + 25 * MINUTE, marketing=True),
        ev("page_viewed", T0 + 40 * MINUTE, url="/"),
        order(T0 + 3 * 60 * MINUTE, 10.0),  # placed in a store, say: not a visit
    ]
    assert rendered(events)["sessions"] == 2  # the email and the consent bridge nothing
    assert rendered(events[1:3])["sessions"] == 0


def test_a_late_event_between_two_sessions_joins_them() -> None:
    first, second = view(T0, "P1"), view(T0 + 50 * MINUTE, "P2")
    assert rendered([first, second])["sessions"] == 2
    assert rendered([first, second, view(T0 + 25 * MINUTE, "P3")])["sessions"] == 1


# --- cart ----------------------------------------------------------------------------------


def test_an_order_checks_out_the_cart_and_a_new_cart_starts_after_it() -> None:
    events = [
        add(T0, "P1", quantity=2, price=5.0),
        add(T0 + MINUTE, "P2", price=7.5),
        order(T0 + 2 * MINUTE, 17.5),
        add(T0 + 3 * MINUTE, "P3", quantity=3, price=2.0),
        add(T0 + 4 * MINUTE, "P1", price=6.0),
        remove(T0 + 5 * MINUTE, "P3"),
        add(T0 + 6 * MINUTE, "P4"),
        remove(T0 + 7 * MINUTE, "P4", quantity=2),  # net -1: not in the cart
    ]
    cart = rendered(events)["cart"]
    assert cart == {
        "items": [
            {"product_id": "P1", "category": "shoes", "price": 6.0, "quantity": 1},
            {"product_id": "P3", "category": "shoes", "price": 2.0, "quantity": 2},
        ],
        "value": 10.0,
        "since": oracle.rfc3339(T0 + 3 * MINUTE),
    }


def test_cart_changes_arriving_after_a_later_order_stay_checked_out() -> None:
    late_add, late_remove = add(T0, "P1", quantity=2), remove(T0 + MINUTE, "P2")
    events = [add(T0 - MINUTE, "P2"), order(T0 + 2 * MINUTE, 10.0), late_add, late_remove]
    assert rendered(events)["cart"] == {"items": [], "value": 0.0, "since": None}
    # an add exactly at the order's time was part of that checkout
    assert rendered([*events, add(T0 + 2 * MINUTE, "P5")])["cart"]["items"] == []


def test_the_cart_price_is_the_newest_add_whatever_the_arrival_order() -> None:
    newer, older = add(T0 + MINUTE, "P1", price=8.0, category="bags"), add(T0, "P1", price=9.0)
    cart = rendered([newer, older])["cart"]
    assert cart["items"] == [{"product_id": "P1", "category": "bags", "price": 8.0, "quantity": 2}]
    assert cart["value"] == 16.0
    assert cart["since"] == oracle.rfc3339(T0)


def test_equal_time_adds_of_a_product_give_one_price_whatever_the_arrival_order() -> None:
    # The newest add sets the price; between adds at the same instant the oracle takes
    # the highest (price, category), so that the cart is a function of the set of events.
    cheap, dear = add(T0, "P1", price=5.0), add(T0, "P1", price=6.0, category="bags")
    for events in ([cheap, dear], [dear, cheap]):
        assert rendered(events)["cart"]["items"] == [
            {"product_id": "P1", "category": "bags", "price": 6.0, "quantity": 2}
        ]


def test_merging_a_visitor_checks_out_its_cart_from_before_the_customers_last_order() -> None:
    visitor_add, customer_order = add(T0, "P1", anonymous=True), order(T0 + MINUTE, 10.0)
    customer = applied([customer_order])
    merge(customer, applied([visitor_add], VISITOR), RULES)
    want = oracle.profile(CUSTOMER, [visitor_add, customer_order], T0 + MINUTE)
    assert want["cart"] == {"items": [], "value": 0.0, "since": None}
    assert render(customer, T0 + MINUTE, RULES)["cart"] == want["cart"]


def test_a_removal_alone_puts_nothing_in_the_cart() -> None:
    assert rendered([remove(T0, "P1", quantity=3)])["cart"]["items"] == []


# --- orders, refunds, rfm ------------------------------------------------------------------


def test_refunds_reduce_monetary_value_but_not_revenue() -> None:
    events = [
        order(T0, 100.0),
        order(T0 + DAY, 50.5),
        ev("order_refunded", T0 + 2 * DAY, order_id="O-1", amount=30.5, currency="EUR"),
    ]
    got = rendered(events, as_of=T0 + 3 * DAY)
    assert (got["orders"], got["revenue"], got["average_order_value"]) == (2, 150.5, 75.25)
    assert got["refunds"] == {"count": 1, "amount": 30.5}
    assert got["rfm"] == {"recency_days": 2.0, "frequency": 2, "monetary": 120.0}
    assert (got["first_order_at"], got["last_order_at"]) == (
        oracle.rfc3339(T0),
        oracle.rfc3339(T0 + DAY),
    )


def test_no_orders_render_as_zero_and_none() -> None:
    got = rendered([ev("page_viewed", T0, url="/")])
    assert (got["orders"], got["average_order_value"], got["last_order_at"]) == (0, 0.0, None)
    assert got["rfm"] == {"recency_days": None, "frequency": 0, "monetary": 0.0}


# --- consent -------------------------------------------------------------------------------


def test_consent_is_the_newest_update_and_a_refusal_wins_a_tie() -> None:
    grant, refuse = consent(T0, marketing=True), consent(T0, marketing=False)
    for events in ([grant, refuse], [refuse, grant]):
        assert rendered(events)["consent"]["marketing"] is False
    later = consent(T0 + 1, marketing=True, analytics=None)
    got = rendered([later, grant, refuse])["consent"]
    assert got == {"analytics": None, "personalization": None, "marketing": True}


def test_a_purpose_left_out_keeps_its_state() -> None:
    events = [
        consent(T0, analytics=True, personalization=False),
        consent(T0 + MINUTE, marketing=False),
        consent(T0 + 2 * MINUTE, personalization=None),
    ]
    got = rendered(events)["consent"]
    assert got == {"analytics": True, "personalization": False, "marketing": False}


# --- windows -------------------------------------------------------------------------------


def test_windows_include_the_oldest_bucket_and_exclude_the_one_before() -> None:
    as_of = T0 + 10 * DAY + 12 * HOUR + 7 * MINUTE  # 12:07 on day 10
    cases = {
        "1h": T0 + 10 * DAY + 11 * HOUR + 10 * MINUTE,  # buckets 11:10 .. 12:05
        "24h": T0 + 9 * DAY + 13 * HOUR,  # buckets 13:00 the day before .. 12:00
        "7d": T0 + 4 * DAY,  # days 4 .. 10
        "30d": T0 - 19 * DAY,  # days -19 .. 10
    }
    events = []
    for oldest in cases.values():
        events += [order(oldest, 1.0), order(oldest - 1, 100.0)]
    got = rendered(events, as_of=as_of)["windows"]
    assert got == {
        "1h": {"events": 1, "orders": 1, "revenue": 1.0},
        "24h": {"events": 3, "orders": 3, "revenue": 102.0},
        "7d": {"events": 5, "orders": 5, "revenue": 203.0},
        "30d": {"events": 7, "orders": 7, "revenue": 304.0},
    }


def test_windows_are_read_at_the_profiles_last_event_when_as_of_is_older() -> None:
    got = rendered([order(T0 + DAY, 5.0)], as_of=T0)
    assert got["as_of"] == oracle.rfc3339(T0 + DAY)
    assert got["windows"]["1h"] == {"events": 1, "orders": 1, "revenue": 5.0}


# --- affinity, recently viewed ------------------------------------------------------------


def test_affinity_halves_every_fourteen_days() -> None:
    t = T0 + 60 * DAY
    events = [
        view(t, "P1", category="shoes"),
        add(t - 14 * DAY, "P2", category="bags"),
        order(t - 28 * DAY, 20.0, "hats", "hats"),
    ]
    assert rendered(events)["category_affinity"] == {"hats": 2.5, "bags": 1.5, "shoes": 1.0}
    later = rendered(events, as_of=t + 14 * DAY)["category_affinity"]
    assert later == {"hats": 1.25, "bags": 0.75, "shoes": 0.5}
    assert list(later) == ["hats", "bags", "shoes"]


def test_recently_viewed_keeps_the_twenty_newest_products_newest_first() -> None:
    events = [view(T0 + i * MINUTE, f"P{i:02d}") for i in range(25)]
    events += [view(T0 + 30 * MINUTE, "P03"), view(T0, "P24"), view(T0 + 24 * MINUTE, "Q")]
    got = rendered(events)["recently_viewed"]
    assert got[:3] == ["P03", "P24", "Q"]
    assert len(got) == 20 and "P06" not in got and got[-1] == "P07"


# --- identity, time ------------------------------------------------------------------------


def test_identify_lists_the_visitor_and_sets_identified_at_to_the_first() -> None:
    events = [ev("identify", T0 + HOUR), ev("identify", T0, anonymous_id="a-2")]
    got = rendered(events)
    assert sorted(got["anonymous_ids"]) == ["a-1", "a-2"]
    assert got["identified_at"] == oracle.rfc3339(T0)
    assert got["customer_id"] == CUSTOMER


def test_an_identify_naming_the_customer_itself_lists_no_anonymous_id() -> None:
    got = rendered([ev("identify", T0, anonymous_id=CUSTOMER)])
    assert got["anonymous_ids"] == []


def test_every_timestamp_form_of_one_instant_gives_one_profile() -> None:
    forms: list[Any] = [T0 + 1500, "2026-01-01T00:00:01.500Z", "2026-01-01T02:00:01.5+02:00"]
    for form in forms:
        event = ev("page_viewed", 0, url="/")
        event["timestamp"] = form
        got = rendered([event])
        assert got["first_seen"] == got["as_of"] == "2026-01-01T00:00:01.500Z"


def test_a_client_duplicate_is_applied_once() -> None:
    event = view(T0, "P1")
    profile = new_profile(CUSTOMER)
    assert apply(profile, parsed(event), RULES, "clickstream:0:C-1", 7)
    assert not apply(profile, parsed(event), RULES, "clickstream:0:C-1", 8)
    assert profile.events == 1


# --- properties ----------------------------------------------------------------------------

PRODUCTS = ("P1", "P2", "P3")
CATEGORIES = ("shoes", "bags", "hats")
CHANNELS = ("web", "app", "email", "store")
# cart and order events weigh more: their interplay is where order and merging matter
KINDS = (
    *("product_added",) * 4,
    *("product_removed", "order_completed") * 2,
    "product_viewed",
    "page_viewed",
    "search_performed",
    "checkout_started",
    "order_refunded",
    "identify",
    "consent_updated",
    "email_opened",
    "offer_shown",
    "custom",
)
CUSTOM_NAMES = ("wishlist_added", "video_played", "banner_closed")
money = st.integers(0, 50_000).map(lambda cents: cents / 100)


@st.composite
def one_event(draw: st.DrawFn, t: int, anonymous: bool) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    if anonymous and kind == "identify":
        kind = "page_viewed"
    channel = draw(st.sampled_from(CHANNELS))
    product = draw(st.sampled_from(PRODUCTS))
    category = draw(st.sampled_from(CATEGORIES))
    if kind == "page_viewed":
        props: dict[str, Any] = {"url": "/"}
    elif kind == "product_viewed":
        props = {"product_id": product, "category": category, "price": draw(money)}
    elif kind == "search_performed":
        props = {"query": "boots"}
    elif kind == "product_added":
        quantity = draw(st.integers(1, 3))
        props = {"product_id": product, "category": category, "price": draw(money)}
        props["quantity"] = quantity
    elif kind == "product_removed":
        props = {"product_id": product, "quantity": draw(st.integers(1, 3))}
    elif kind == "checkout_started":
        props = {}
    elif kind == "order_completed":
        items = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "product_id": st.sampled_from(PRODUCTS),
                        "category": st.sampled_from(CATEGORIES),
                        "price": money,
                        "quantity": st.integers(1, 3),
                    }
                ),
                min_size=1,
                max_size=3,
            )
        )
        props = {"order_id": "O", "revenue": draw(money), "currency": "EUR", "items": items}
    elif kind == "order_refunded":
        props = {"order_id": "O", "amount": draw(money), "currency": "EUR"}
    elif kind == "identify":
        props = {"anonymous_id": draw(st.sampled_from((VISITOR, "a-2")))}
    elif kind == "consent_updated":
        purposes = st.dictionaries(
            st.sampled_from(oracle.PURPOSES), st.sampled_from((True, False, None)), max_size=3
        )
        props = {"purposes": draw(purposes)}
    elif kind == "email_opened":
        props = {"campaign_id": "n1"}
    elif kind == "custom":
        props = {"seconds": draw(st.integers(0, 99))}
    else:
        props = {"offer_id": "welcome10"}
    event = ev(kind, t, anonymous=anonymous, channel=channel, **props)
    if kind == "custom":
        event["name"] = draw(st.sampled_from(CUSTOM_NAMES))
    if not anonymous and kind != "identify" and draw(st.booleans()):
        event["anonymous_id"] = VISITOR  # a logged-in SDK still sends the cookie id
    return event


@st.composite
def histories(draw: st.DrawFn, with_visitor: bool = False) -> list[dict[str, Any]]:
    """One customer's events, within the engine's documented session limit.

    Times fall into at most 8 clusters no wider than the session gap, so no order of
    arrival ever holds more than 8 separate sessions at once; a 5-minute resolution makes
    ties (equal times) common.
    """
    clusters = draw(st.lists(st.integers(0, 45 * 24), min_size=1, max_size=8))
    size = draw(st.integers(1, 30))
    events = []
    for _ in range(size):
        t = T0 + draw(st.sampled_from(clusters)) * HOUR + draw(st.integers(0, 6)) * 5 * MINUTE
        anonymous = with_visitor and draw(st.booleans())
        events.append(draw(one_event(t, anonymous)))
    if with_visitor:
        cluster = draw(st.sampled_from(clusters))
        events.append(ev("identify", T0 + cluster * HOUR + draw(st.integers(0, 6)) * 5 * MINUTE))
    # Withholding analytics deletes what was collected (README: consent matrix), and a
    # later grant cannot bring it back; so arrival order is free only in histories that
    # never grant analytics after withholding it. One answer per history keeps that.
    analytics = draw(st.booleans())
    for event in events:
        purposes = (
            event["properties"].get("purposes", {}) if event["type"] == "consent_updated" else {}
        )
        if purposes.get("analytics") is not None:
            purposes["analytics"] = analytics
    return events


def _truth(events: list[dict[str, Any]]) -> dict[str, Any]:
    return oracle.profile(CUSTOMER, events, newest(events))


@settings(max_examples=100, deadline=None)
@given(st.data(), histories(with_visitor=True))
def test_any_arrival_order_gives_the_same_profile(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    shuffled = data.draw(st.permutations(events))
    want = _truth(events)
    for arrival in (events, shuffled):
        assert oracle.differences(render(applied(arrival), newest(events), RULES), want) == []


@settings(max_examples=100, deadline=None)
@given(st.data(), histories(with_visitor=True))
def test_merging_the_visitors_profile_equals_one_profile_all_along(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    # Before the link the visitor's own events build its profile and the customer's build
    # the customer's; after it, everything goes to the customer.
    after_link = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    before = [e for e, late in zip(events, after_link, strict=True) if not late]
    after = [e for e, late in zip(events, after_link, strict=True) if late]
    customer = applied([e for e in before if "customer_id" in e])
    visitor = applied([e for e in before if "customer_id" not in e], VISITOR)
    merge(customer, visitor, RULES)
    for event in after:
        apply(customer, parsed(event), RULES)
    got = render(customer, newest(events), RULES)
    assert oracle.differences(got, _truth(events)) == []
    assert oracle.differences(got, render(applied(events), newest(events), RULES)) == []


@settings(max_examples=60, deadline=None)
@given(st.data(), histories(with_visitor=True))
def test_re_applying_a_prefix_from_the_same_offsets_changes_nothing(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    offsets: dict[str, int] = {}
    messages: list[tuple[Event, str, int]] = []
    for event in events:
        key = event.get("customer_id") or event["anonymous_id"]
        source = f"{STREAM_OF_TYPE[event['type']]}:{data.draw(st.integers(0, 1))}:{key}"
        offsets[source] = offsets.get(source, -1) + data.draw(st.integers(1, 3))
        messages.append((parsed(event), source, offsets[source]))
    profile = new_profile(CUSTOMER)
    for message, source, offset in messages:
        assert apply(profile, message, RULES, source, offset)
    before = encode(profile)
    prefix = data.draw(st.integers(0, len(messages)))
    # the prefix comes back in any order: each message is still at or below its offset
    for message, source, offset in data.draw(st.permutations(messages[:prefix])):
        assert not apply(profile, message, RULES, source, offset)
    assert encode(profile) == before
    assert oracle.differences(render(profile, newest(events), RULES), _truth(events)) == []


@given(st.integers(min_value=0, max_value=32_503_679_999_999))
def test_iso_is_the_exact_calendar_time_of_epoch_milliseconds(millis: int) -> None:
    # Exact integer arithmetic (datetime.fromtimestamp(millis / 1000) rounded some far
    # times a millisecond down), checked against datetime's own calendar.
    exact = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    assert iso(millis) == exact.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(None) is None
