"""The Segment spec mapped to the contract, field by field, on the spec's own examples.

The messages below are the documented examples of Segment's spec (the common fields,
identify, page, screen, alias, group, the e-commerce v2 and email events), as its pages
print them; every expected value is read from the message itself, never written down twice.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.contract.events import parse_timestamp
from cdpulse.contract.segment_spec import (
    GROUP_TRAIT,
    TRACK_EVENTS,
    custom_name,
    event_time,
    message_id,
    to_event,
    wanted,
)
from cdpulse.contract.validation import Rejection, validate

RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = RECEIVED + timedelta(seconds=1)


def ms(text: str) -> int:
    return int(parse_timestamp(text).timestamp() * 1000)


def track(event: str, properties: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    """A track call as the e-commerce spec's examples give it (userId and properties)."""
    return {
        "userId": "019mr8mf4r",
        "type": "track",
        "event": event,
        "properties": properties,
        "messageId": f"m-{event}",
        **envelope,
    }


PRODUCTS = [
    {
        "product_id": "507f1f77bcf86cd799439011",
        "sku": "45790-32",
        "name": "Monopoly: 3rd Edition",
        "price": 19,
        "quantity": 1,
        "category": "Games",
        "url": "https://www.example.com/product/path",
        "image_url": "https:///www.example.com/product/path.jpg",
    },
    {
        "product_id": "505bd76785ebb509fc183733",
        "sku": "46493-32",
        "name": "Uno Card Game",
        "price": 3,
        "quantity": 2,
        "category": "Games",
    },
]
ORDER_COMPLETED = track(
    "Order Completed",
    {
        "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
        "order_id": "50314b8e9bcf000000000000",
        "affiliation": "Google Store",
        "total": 27.50,
        "subtotal": 22.50,
        "revenue": 25.00,
        "shipping": 3,
        "tax": 2,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "USD",
        "products": PRODUCTS,
    },
)
PRODUCT_VIEWED = track(
    "Product Viewed",
    {
        "product_id": "507f1f77bcf86cd799439011",
        "sku": "G-32",
        "category": "Games",
        "name": "Monopoly: 3rd Edition",
        "brand": "Hasbro",
        "variant": "200 pieces",
        "price": 18.99,
        "quantity": 1,
        "coupon": "MAYDEALS",
        "currency": "usd",
        "position": 3,
        "value": 18.99,
        "url": "https://www.example.com/product/path",
        "image_url": "https://www.example.com/product/path.jpg",
    },
)
PRODUCT_ADDED = track(
    "Product Added",
    {"cart_id": "skdjsidjsdkdj29j", **PRODUCT_VIEWED["properties"], "quantity": 2},
)
IDENTIFY = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {
        "ip": "8.8.8.8",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2) AppleWebKit/537.36",
    },
    "integrations": {"All": False, "Mixpanel": True, "Salesforce": True},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "traits": {
        "name": "Peter Gibbons",
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
        "address": {
            "street": "6th St",
            "city": "San Francisco",
            "state": "CA",
            "postalCode": "94103",
            "country": "USA",
        },
    },
    "type": "identify",
    "userId": "97980cfea0067",
    "version": "1.1",
}
# The spec's page and alias examples print the same envelope.
ENVELOPE = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2)"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "version": "1.1",
}
PAGE = {
    **ENVELOPE,
    "name": "Home",
    "properties": {"title": "Welcome | Initech", "url": "http://www.example.com"},
    "type": "page",
    "userId": "97980cfea0067",
}
ALIAS = {
    **ENVELOPE,
    "previousId": "39239-239239-239239-23923",
    "type": "alias",
    "userId": "507f191e81",
}
# The spec's common-fields example: a custom event from analytics.js.
COURSE_CLICKED = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "page": {
            "path": "/academy/",
            "referrer": "",
            "search": "",
            "title": "Analytics Academy",
            "url": "https://segment.com/academy/",
        },
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_5) AppleWebKit/537.36",
        "ip": "108.0.78.21",
    },
    "event": "Course Clicked",
    "integrations": {},
    "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    "properties": {"title": "Intro to Analytics"},
    "receivedAt": "2015-12-12T19:11:01.266Z",
    "sentAt": "2015-12-12T19:11:01.169Z",
    "timestamp": "2015-12-12T19:11:01.249Z",
    "type": "track",
    "userId": "AiUGstSDIg",
    "originalTimestamp": "2015-12-12T19:11:01.152Z",
}
# The spec's screen and group examples.
SCREEN = {
    "anonymousId": "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
    "channel": "mobile",
    "context": {"ip": "8.8.8.8"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "name": "Home",
    "properties": {"variation": "blue signup button"},
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "screen",
    "userId": "97980cfea0067",
    "version": "1.1",
}
GROUP = {
    **ENVELOPE,
    "groupId": "0e8c78ea9d97a7b8185e8632",
    "traits": {
        "name": "Initech",
        "industry": "Technology",
        "employees": 329,
        "plan": "enterprise",
        "total billed": 830,
    },
    "type": "group",
    "userId": "97980cfea0067",
}
CAMPAIGN = {
    "name": "TPS Innovation Newsletter",
    "source": "Newsletter",
    "medium": "email",
    "term": "tps reports",
    "content": "image link",
}


def mapped(message: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The contract event of ``message``, which the contract must accept."""
    event = to_event(message, received_at=RECEIVED, **kwargs)
    assert isinstance(event, dict), event
    checked = validate(event, now=NOW)
    assert not isinstance(checked, Rejection), checked
    return event


def test_order_completed_maps_products_to_items_and_revenue() -> None:
    event = mapped(ORDER_COMPLETED)
    p = ORDER_COMPLETED["properties"]
    assert event["type"] == "order_completed"
    assert event["event_id"] == ORDER_COMPLETED["messageId"]
    assert event["customer_id"] == ORDER_COMPLETED["userId"]
    assert "anonymous_id" not in event
    assert event["properties"] == {
        "order_id": p["order_id"],
        "revenue": p["revenue"],
        "currency": p["currency"],
        "items": [
            {k: x[k] for k in ("product_id", "category", "price", "quantity")}
            for x in p["products"]
        ],
    }


def test_order_revenue_falls_back_to_total_and_quantity_to_one() -> None:
    message = copy.deepcopy(ORDER_COMPLETED)
    del message["properties"]["revenue"]
    for product in message["properties"]["products"]:
        del product["quantity"]
    items = mapped(message)["properties"]["items"]
    assert mapped(message)["properties"]["revenue"] == message["properties"]["total"]
    assert [i["quantity"] for i in items] == [1] * len(message["properties"]["products"])


def test_product_viewed_and_added() -> None:
    for message, kind in ((PRODUCT_VIEWED, "product_viewed"), (PRODUCT_ADDED, "product_added")):
        event, p = mapped(message), message["properties"]
        assert event["type"] == kind
        assert event["properties"]["product_id"] == p["product_id"]
        assert event["properties"]["category"] == p["category"]
        assert event["properties"]["price"] == p["price"]
    assert (
        mapped(PRODUCT_ADDED)["properties"]["quantity"] == PRODUCT_ADDED["properties"]["quantity"]
    )


def test_the_other_ecommerce_and_email_events() -> None:
    checkout = {
        "order_id": "50314b8e9bcf000000000000",
        "affiliation": "Google Store",
        "value": 30,
        "revenue": 25.00,
        "shipping": 3,
        "tax": 2,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "USD",
        "products": PRODUCTS,
    }
    refunded = {"order_id": "50314b8e9bcf000000000000", "total": 30, "currency": "USD"}
    promotion = {
        "promotion_id": "promo_1",
        "creative": "top_banner_2",
        "name": "75% store-wide shoe sale",
        "position": "home_banner_top",
    }
    email = {
        "email_id": "18vzF7u3z",
        "email_subject": "Welcome, Peter!",
        "campaign_id": "123",
        "campaign_name": "Welcome series",
    }
    clicked = {**email, "link_url": "https://www.example.com/welcome"}
    removed = {"product_id": "507f1f77bcf86cd799439011", "quantity": 1}
    cases = [
        ("Checkout Started", checkout, "checkout_started", {"cart_value": checkout["revenue"]}),
        (
            "Order Refunded",
            refunded,
            "order_refunded",
            {k: refunded[k] for k in ("order_id", "currency")} | {"amount": refunded["total"]},
        ),
        ("Products Searched", {"query": "blue roses"}, "search_performed", {"query": "blue roses"}),
        ("Product Removed", removed, "product_removed", removed),
        (
            "Promotion Viewed",
            promotion,
            "offer_shown",
            {"offer_id": promotion["promotion_id"], "placement": promotion["position"]},
        ),
        (
            "Email Opened",
            email,
            "email_opened",
            {"campaign_id": email["campaign_id"], "message_id": email["email_id"]},
        ),
        (
            "Email Link Clicked",
            clicked,
            "email_clicked",
            {"campaign_id": clicked["campaign_id"], "url": clicked["link_url"]},
        ),
    ]
    assert {name for name, *_ in cases} | {
        "Order Completed",
        "Product Viewed",
        "Product Added",
    } == set(TRACK_EVENTS)
    for name, properties, kind, expected in cases:
        event = mapped(track(name, properties))
        assert (event["type"], event["properties"]) == (kind, expected), name
        assert event["channel"] == ("email" if name.startswith("Email") else "web")


def test_identify_keeps_scalar_traits_and_links_the_anonymous_id() -> None:
    event = mapped(IDENTIFY)
    assert event["type"] == "identify"
    assert (event["customer_id"], event["anonymous_id"]) == (
        IDENTIFY["userId"],
        IDENTIFY["anonymousId"],
    )
    traits = IDENTIFY["traits"]
    assert event["properties"]["traits"] == {
        k: v for k, v in traits.items() if not isinstance(v, dict)
    }
    assert event["context"] == {"user_agent": IDENTIFY["context"]["userAgent"]}
    # sent when it happened: the event time is when it was received
    assert event["timestamp"] == int(RECEIVED.timestamp() * 1000)


def test_identify_from_rudderstack_has_its_traits_in_the_context() -> None:
    rudder = {k: v for k, v in IDENTIFY.items() if k != "traits"}
    rudder["context"] = {**IDENTIFY["context"], "traits": IDENTIFY["traits"]}
    assert mapped(rudder)["properties"] == mapped(IDENTIFY)["properties"]
    both = {**IDENTIFY, "context": {"traits": {"plan": "other"}}}
    assert mapped(both)["properties"] == mapped(IDENTIFY)["properties"]  # the spec's first


def test_integrations_decide_whether_a_message_is_for_cdpulse() -> None:
    # The spec's identify example is addressed to Mixpanel and Salesforce only.
    assert not wanted(IDENTIFY)
    assert wanted({**IDENTIFY, "integrations": {**IDENTIFY["integrations"], "cdpulse": True}})
    assert wanted(PAGE) and wanted(COURSE_CLICKED) and wanted(ORDER_COMPLETED)
    assert not wanted({**PAGE, "integrations": {"cdpulse": False}})


def test_page_takes_url_title_and_referrer() -> None:
    event = mapped(PAGE)
    assert event["type"] == "page_viewed"
    assert event["properties"] == PAGE["properties"]
    assert (event["customer_id"], event["anonymous_id"]) == (PAGE["userId"], PAGE["anonymousId"])
    # analytics.js: the page's fields in the context when the properties lack them
    page_context = COURSE_CLICKED["context"]["page"]
    from_context = mapped({**COURSE_CLICKED, "type": "page", "properties": {}})
    assert from_context["properties"] == {k: page_context[k] for k in ("url", "title", "referrer")}


def test_alias_is_an_identify_that_links_the_previous_id() -> None:
    event = mapped(ALIAS)
    assert event["type"] == "identify"
    assert (event["customer_id"], event["anonymous_id"]) == (ALIAS["userId"], ALIAS["previousId"])
    assert event["properties"] == {}


def test_any_other_track_event_is_a_custom_event_with_its_properties() -> None:
    event = mapped(COURSE_CLICKED)
    assert (event["type"], event["name"]) == ("custom", "course_clicked")
    assert event["properties"] == COURSE_CLICKED["properties"]
    assert event["event_id"] == COURSE_CLICKED["messageId"]
    assert (event["customer_id"], event["anonymous_id"]) == (
        COURSE_CLICKED["userId"],
        COURSE_CLICKED["anonymousId"],
    )
    # The e-commerce spec's events without a cdpulse type are custom events too.
    promotion = mapped(track("Promotion Clicked", {"promotion_id": "promo_1"}))
    assert (promotion["name"], promotion["properties"]) == (
        "promotion_clicked",
        {"promotion_id": "promo_1"},
    )
    assert mapped(track("Video Played", {}))["properties"] == {}
    assert mapped({**track("Video Played", {}), "properties": None})["properties"] == {}


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("Wishlist Added", "wishlist_added"),
        ("videoPlayed", "video_played"),
        ("Add to Wishlist!", "add_to_wishlist"),
        ("Vidéo lue", "video_lue"),
        ("  signed-up  ", "signed_up"),
    ],
)
def test_a_track_events_name_becomes_snake_case(name: str, ours: str) -> None:
    assert custom_name(name) == ours
    assert mapped(track(name, {}))["name"] == ours


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ("!!!", "has no letter or digit"),
        ("3D View", "must be snake_case"),
        ("x" * 65, "at most 64"),
        ("Page Viewed", "built-in event type"),
        ("Trial 7d", "must not end in"),
        (None, "'event' is missing"),
        (7, "'event' is not text"),
    ],
)
def test_a_track_event_name_that_makes_no_custom_name_is_rejected_naming_event(
    event: Any, says: str
) -> None:
    message = {**COURSE_CLICKED, "event": event}
    rejection = to_event(message, received_at=RECEIVED)
    assert isinstance(rejection, Rejection) and rejection.reason == "invalid_field"
    assert "'event'" in rejection.detail and says in rejection.detail, rejection.detail
    if isinstance(event, str):
        assert event not in rejection.detail  # never quotes the input


def test_custom_properties_that_are_not_an_object_are_named_by_the_contract() -> None:
    event = to_event({**COURSE_CLICKED, "properties": ["x"]}, received_at=RECEIVED)
    assert isinstance(event, dict)
    rejection = validate(event, now=NOW)
    assert isinstance(rejection, Rejection) and "'properties'" in rejection.detail


def test_screen_is_an_apps_page_view_named_by_the_screen() -> None:
    event = mapped(SCREEN)
    assert event["type"] == "page_viewed" and event["channel"] == "app"
    assert event["properties"] == {"url": SCREEN["name"], "title": SCREEN["name"]}
    assert (event["customer_id"], event["anonymous_id"]) == (
        SCREEN["userId"],
        SCREEN["anonymousId"],
    )
    assert event["event_id"] == SCREEN["messageId"]
    unnamed = mapped({k: v for k, v in SCREEN.items() if k != "name"})
    assert unnamed["properties"] == {"url": ""}
    # analytics.js's short path /v1/s names its call in the route, not the body
    assert mapped({k: v for k, v in SCREEN.items() if k != "type"}, call="screen") == event


def test_group_sets_the_customers_group_trait_and_links_no_visitor() -> None:
    event = mapped(GROUP)
    assert event["type"] == "identify"
    assert event["customer_id"] == GROUP["userId"] and "anonymous_id" not in event
    assert event["properties"] == {"traits": {GROUP_TRAIT: GROUP["groupId"]}}
    assert GROUP_TRAIT == "group_id"
    anonymous = to_event({k: v for k, v in GROUP.items() if k != "userId"}, received_at=RECEIVED)
    assert isinstance(anonymous, Rejection) and anonymous.reason == "missing_id"
    assert "'userId'" in anonymous.detail


def test_a_call_that_is_no_segment_call_is_unknown_type() -> None:
    rejection = to_event({**PAGE, "type": "pageview"}, received_at=RECEIVED)
    assert isinstance(rejection, Rejection) and rejection.reason == "unknown_type"
    assert "pageview" not in rejection.detail  # never quotes the input
    missing = to_event({"userId": "u"}, received_at=RECEIVED)
    assert isinstance(missing, Rejection) and missing.reason == "missing_type"
    nameless = to_event({"userId": "u"}, call="track", received_at=RECEIVED)
    assert isinstance(nameless, Rejection) and nameless.reason == "invalid_field"


def test_event_time_corrects_the_senders_clock_skew() -> None:
    m = COURSE_CLICKED
    received = int(RECEIVED.timestamp() * 1000)
    assert event_time(m, m["sentAt"], RECEIVED) == received - (ms(m["sentAt"]) - ms(m["timestamp"]))
    # the batch's sentAt when the message has none; the message's own wins
    no_sent = {k: v for k, v in PAGE.items() if k != "sentAt"}
    batch_sent = "2015-02-23T22:28:57.111Z"  # two seconds after the page's timestamp
    assert mapped(no_sent, sent_at=batch_sent)["timestamp"] == received - 2000
    assert mapped({**no_sent, "sentAt": PAGE["sentAt"]}, sent_at=batch_sent)["timestamp"] == (
        received - (ms(PAGE["sentAt"]) - ms(PAGE["timestamp"]))
    )
    assert event_time(no_sent, None, RECEIVED) == ms(PAGE["timestamp"])
    bad = to_event({**PAGE, "sentAt": "yesterday"}, received_at=RECEIVED)
    assert isinstance(bad, Rejection) and bad.reason == "invalid_field" and "'sentAt'" in bad.detail


def test_campaign_and_channel_come_from_the_context() -> None:
    web = mapped({**PAGE, "context": {"campaign": CAMPAIGN, "locale": "en-US"}})
    assert web["context"] == {"campaign": CAMPAIGN, "locale": "en-US"}
    assert web["channel"] == "web"
    app = mapped({**PAGE, "context": {"app": {"name": "InitechGlobal"}, "device": {}}})
    assert app["channel"] == "app"


def test_a_message_without_message_id_gets_one_from_its_content() -> None:
    bare = {k: v for k, v in PAGE.items() if k != "messageId"}
    first = message_id(bare)
    assert first == message_id({**bare, "sentAt": "2016-01-01T00:00:00Z"})  # a resend
    assert first != message_id({**bare, "timestamp": "2015-02-23T22:28:56.111Z"})
    assert mapped(bare)["event_id"] == first


def test_a_missing_field_is_named_by_the_contract() -> None:
    message = copy.deepcopy(PRODUCT_VIEWED)
    del message["properties"]["category"]
    event = to_event(message, received_at=RECEIVED)
    assert isinstance(event, dict)
    rejection = validate(event, now=NOW)
    assert isinstance(rejection, Rejection) and rejection.reason == "invalid_field"
    assert "'properties.category'" in rejection.detail


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["type", "event", "userId", "anonymousId", "previousId", "messageId", "timestamp",
     "sentAt", "properties", "traits", "context", "integrations", "products"]
)  # fmt: skip


@given(st.dictionaries(KEYS, JSON) | JSON, st.none() | JSON)
def test_mapping_is_total_on_hostile_input(message: Any, sent_at: Any) -> None:
    for call in (None, "track", "identify", "page", "screen", "alias", "group"):
        event = to_event(message, call=call, sent_at=sent_at, received_at=RECEIVED)
        if isinstance(event, dict):
            validate(event, now=NOW)  # a verdict, never an exception


@pytest.mark.parametrize("name", sorted(TRACK_EVENTS))
def test_every_mapped_event_name_yields_its_type(name: str) -> None:
    event = to_event(track(name, {}), received_at=RECEIVED)
    assert isinstance(event, dict) and event["type"] == TRACK_EVENTS[name][0]
