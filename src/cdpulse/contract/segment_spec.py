"""The Segment tracking spec spoken by cdpulse: one Segment message in, one contract event
(a dict for ``validation.validate``) or a ``Rejection`` out.

Segment's SDKs (and RudderStack's, which speak the same spec) send ``track``,
``identify``, ``page``, ``screen``, ``alias`` and ``group`` calls. Each becomes the
contract's typed event it means, field by field, and nothing is invented: a required
field the message lacks is left out so that the contract names it. The mapping:

* ``messageId`` is the ``event_id``, so an SDK's retry is dropped by the engine's dedupe
  window (a message without one gets a hash of its content: a verbatim resend too).
* ``userId`` is the ``customer_id``, ``anonymousId`` the ``anonymous_id``.
* Event time corrects the sender's clock skew as Segment does: ``receivedAt - (sentAt -
  timestamp)``; ``timestamp`` alone when no ``sentAt`` came, ``receivedAt`` when neither.
* ``context.userAgent``, ``context.locale`` and ``context.campaign`` (UTM) are the
  contract's context; the channel is ``email`` for the email events, ``app`` when the
  context names an app or device (the mobile SDKs), else ``web``.
* ``identify`` keeps the scalar traits (the contract's; Segment's nested ``address`` or
  ``company`` has nowhere to go), from ``context.traits`` when the message has no
  ``traits`` (RudderStack's SDKs put them there); the trait allow-list and
  pseudonymisation are the collector's, after this. ``alias`` is an identify linking
  ``previousId`` to ``userId``, under the identity rules.
* A ``track`` event the spec mappings (``TRACK_EVENTS``) do not name is a ``custom``
  event: its name in snake_case (``Wishlist Added`` is ``wishlist_added``), its
  properties as sent.
* ``screen`` is an app's page view (``page_viewed``, channel ``app``): the screen's name
  is its url and title. ``group`` is an identify of ``userId`` setting the trait
  ``group_id`` to ``groupId`` (kept when the trait allow-list names it); it links no
  visitor, and the group's own traits are not the customer's.

>>> event = to_event(
...     {"type": "track", "event": "Product Viewed", "messageId": "m-1", "userId": "C-1",
...      "timestamp": "2026-01-01T10:00:00Z", "sentAt": "2026-01-01T10:00:05Z",
...      "properties": {"product_id": "P-1", "category": "Games", "price": 18.99}},
...     received_at=datetime.fromisoformat("2026-01-01T10:00:01+00:00"))
>>> event["type"], event["event_id"], event["timestamp"], event["properties"]["price"]
('product_viewed', 'm-1', 1767261596000, 18.99)
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cdpulse.contract.events import custom_name_problem, parse_timestamp
from cdpulse.contract.validation import (
    INVALID_FIELD,
    MISSING_ID,
    MISSING_TYPE,
    NOT_AN_OBJECT,
    UNKNOWN_TYPE,
    Rejection,
)

# The spec's limits (Segment's HTTP tracking API; its SDKs enforce them before sending).
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024

CALLS = ("track", "identify", "page", "screen", "alias", "group")
_CAMPAIGN = ("name", "source", "medium", "term", "content")

Message = Mapping[str, Any]
Properties = dict[str, Any]
# The fields of an event its call decides: type, properties (and a custom event's name).
Typed = dict[str, Any]
# The trait a group call sets: the customer's group (company, account) id.
GROUP_TRAIT = "group_id"


def _pick(source: Mapping[str, Any], /, **names: str | tuple[str, ...]) -> Properties:
    """``{ours: source[theirs]}`` for each name present (not None); a tuple of theirs is
    tried in order. A field the source lacks is left out, so the contract names it."""
    out: Properties = {}
    for ours, theirs in names.items():
        for name in (theirs,) if isinstance(theirs, str) else theirs:
            if source.get(name) is not None:
                out[ours] = source[name]
                break
    return out


def _line_item(product: Any) -> Any:
    """A ``products[]`` entry as the contract's line item; quantity 1 when the spec's
    optional quantity is absent (an ordered product was bought at least once)."""
    if not isinstance(product, Mapping):
        return product  # the contract names it
    return {"quantity": 1} | _pick(
        product, product_id="product_id", category="category", price="price", quantity="quantity"
    )


def _order(p: Mapping[str, Any]) -> Properties:
    products = p.get("products")
    items = [_line_item(x) for x in products] if isinstance(products, list) else products
    order = _pick(p, order_id="order_id", revenue=("revenue", "total"), currency="currency")
    return order if items is None else order | {"items": items}


# The e-commerce and email spec events that have a cdpulse type: name -> (type, properties).
TRACK_EVENTS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], Properties]]] = {
    "Product Viewed": (
        "product_viewed",
        lambda p: _pick(p, product_id="product_id", category="category", price="price"),
    ),
    "Product Added": (
        "product_added",
        lambda p: _pick(
            p, product_id="product_id", category="category", price="price", quantity="quantity"
        ),
    ),
    "Product Removed": (
        "product_removed",
        lambda p: _pick(p, product_id="product_id", quantity="quantity"),
    ),
    "Products Searched": ("search_performed", lambda p: _pick(p, query="query")),
    "Checkout Started": (
        "checkout_started",
        lambda p: _pick(p, cart_value=("revenue", "total", "value")),
    ),
    "Order Completed": ("order_completed", _order),
    "Order Refunded": (
        "order_refunded",
        lambda p: _pick(p, order_id="order_id", amount=("total", "revenue"), currency="currency"),
    ),
    "Email Opened": (
        "email_opened",
        lambda p: _pick(p, campaign_id="campaign_id", message_id="email_id"),
    ),
    "Email Link Clicked": (
        "email_clicked",
        lambda p: _pick(p, campaign_id="campaign_id", url="link_url"),
    ),
    "Promotion Viewed": (
        "offer_shown",
        lambda p: _pick(p, offer_id="promotion_id", placement="position"),
    ),
}
_EMAIL_TYPES = frozenset({"email_opened", "email_clicked"})


def wanted(message: Message) -> bool:
    """Whether the message's ``integrations`` send it to cdpulse: not when it says
    ``"cdpulse": false``, nor ``"All": false`` without ``"cdpulse": true``."""
    integrations = message.get("integrations")
    if not isinstance(integrations, Mapping):
        return True
    mine = integrations.get("cdpulse")
    return mine is not False and (mine is True or integrations.get("All") is not False)


def message_id(message: Message) -> Any:
    """The event id: ``messageId``, else a hash of the message (a resend has the same)."""
    given = message.get("messageId")
    if given is not None:
        return given
    # sentAt differs between a send and its resend; the message itself does not.
    content = {k: v for k, v in message.items() if k != "sentAt"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"segment-{digest[:32]}"


def event_time(message: Message, sent_at: Any, received_at: datetime) -> int:
    """Epoch ms of the event, corrected for the sender's clock skew (Segment's rule).

    Raises ValueError naming the field whose time does not parse."""
    received = int(received_at.timestamp() * 1000)
    stamps = []
    for name, value in (("timestamp", message.get("timestamp")), ("sentAt", sent_at)):
        try:
            stamps.append(None if value is None else parse_timestamp(value))
        except ValueError as exc:
            raise ValueError(f"'{name}': {exc}") from None
    timestamp, sent = (None if s is None else int(s.timestamp() * 1000) for s in stamps)
    if timestamp is None:
        return received
    if sent is None:
        return timestamp
    return received - (sent - timestamp)


def _context(context: Any) -> tuple[Any, str]:
    """The contract's context and the channel the Segment context implies."""
    if not isinstance(context, Mapping):
        return context, "web"
    ours = _pick(context, user_agent="userAgent", locale="locale")
    campaign = context.get("campaign")
    if isinstance(campaign, Mapping):
        ours["campaign"] = _pick(campaign, **{name: name for name in _CAMPAIGN})
    elif campaign is not None:
        ours["campaign"] = campaign  # the contract names it
    return ours, "app" if "app" in context or "device" in context else "web"


def custom_name(event: str) -> str:
    """The custom event name of a track event's name: its words in snake_case ASCII.

    >>> custom_name("Wishlist Added"), custom_name("videoPlayed"), custom_name("Vidéo lue!")
    ('wishlist_added', 'video_played', 'video_lue')
    """
    words = _CAMEL.sub("_", event)
    ascii_text = unicodedata.normalize("NFKD", words).encode("ascii", "ignore").decode("ascii")
    return _NOT_A_WORD.sub("_", ascii_text.lower()).strip("_")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_A_WORD = re.compile(r"[^a-z0-9]+")


def _custom(name: Any, raw: Any, event_id: Any) -> Typed | Rejection:
    """A track event no spec mapping names: the contract's custom event."""
    if not isinstance(name, str):
        kind = "missing" if name is None else "not text"
        return Rejection(INVALID_FIELD, f"event {event_id}: 'event' is {kind}", event_id)
    ours = custom_name(name)
    problem = custom_name_problem(ours) if ours else "has no letter or digit"
    if problem is not None:
        detail = f"'event': its custom event name (its words in snake_case) {problem}"
        return Rejection(INVALID_FIELD, f"event {event_id}: {detail}", event_id)
    return {"type": "custom", "name": ours, "properties": {} if raw is None else raw}


def _typed(call: str, message: Message, event_id: Any) -> Typed | Rejection:
    """The contract type and type-specific fields of one call, or why it has none."""
    raw = message.get("properties")
    properties: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if call == "track":
        name = message.get("event")
        if not isinstance(name, str) or name not in TRACK_EVENTS:
            return _custom(name, raw, event_id)
        kind, mapping = TRACK_EVENTS[name]
        return {"type": kind, "properties": mapping(properties)}
    if call == "identify":
        # RudderStack's SDKs send an identify's traits in the context only.
        context = message.get("context")
        traits = message.get("traits")
        if traits is None and isinstance(context, Mapping):
            traits = context.get("traits")
        scalars = (
            {k: v for k, v in traits.items() if not isinstance(v, Mapping | list)}
            if isinstance(traits, Mapping)
            else traits
        )
        return {"type": "identify", "properties": {} if scalars is None else {"traits": scalars}}
    if call == "alias":
        return {"type": "identify", "properties": {}}
    if call == "page":
        # analytics.js puts the page's url, title and referrer in both places.
        context = message.get("context")
        page = context.get("page") if isinstance(context, Mapping) else None
        fields = {"url": "url", "title": "title", "referrer": "referrer"}
        found = _pick(page, **fields) if isinstance(page, Mapping) else {}
        return {"type": "page_viewed", "properties": found | _pick(properties, **fields)}
    if call == "screen":
        # An app's page view: the screen's name is its url and title (the spec's name is
        # optional; an unnamed screen still counts, with an empty url).
        screen = message.get("name", properties.get("name"))
        viewed = {"url": ""} if screen is None else {"url": screen, "title": screen}
        return {"type": "page_viewed", "properties": viewed}
    # group: the customer's group (company, account) is a trait, GROUP_TRAIT, kept when the
    # trait allow-list names it; the group's own traits describe the group, not the customer.
    if message.get("userId") is None:
        return Rejection(
            MISSING_ID,
            f"event {event_id}: a group call needs 'userId': cdpulse keeps the group as a "
            "trait of the customer",
            event_id,
        )
    group = message.get("groupId")
    traits = {} if group is None else {"traits": {GROUP_TRAIT: group}}
    return {"type": "identify", "properties": traits}


def to_event(
    message: Any, *, call: str | None = None, sent_at: Any = None, received_at: datetime
) -> dict[str, Any] | Rejection:
    """The contract event of one Segment ``message``, received at ``received_at``.

    ``call`` is the route's call (``/v1/track``) when the message need not name its
    ``type``; ``sent_at`` the batch's ``sentAt`` when the message has none of its own.
    The result still goes through ``validation.validate``, which names a field the spec
    left out or a value of the wrong type.
    """
    if not isinstance(message, Mapping):
        kind = type(message).__name__
        return Rejection(NOT_AN_OBJECT, f"a Segment message must be a JSON object, got {kind}")
    event_id = message_id(message)
    label = event_id if isinstance(event_id, str) else None
    call = call or message.get("type")
    if call is None:
        return Rejection(MISSING_TYPE, f"event {label}: 'type' is missing", label)
    if call not in CALLS:
        expected = ", ".join(CALLS)
        return Rejection(UNKNOWN_TYPE, f"event {label}: unknown 'type'; expected {expected}", label)
    typed = _typed(call, message, label)
    if isinstance(typed, Rejection):
        return typed
    try:
        at = event_time(message, message.get("sentAt", sent_at), received_at)
    except ValueError as exc:
        return Rejection(INVALID_FIELD, f"event {label}: {exc}", label)
    context, channel = _context(message.get("context"))
    if typed["type"] in _EMAIL_TYPES:
        channel = "email"
    elif call == "screen":
        channel = "app"
    event: dict[str, Any] = {"event_id": event_id, "timestamp": at, "channel": channel, **typed}
    ids = _pick(message, customer_id="userId", anonymous_id="anonymousId")
    if call == "alias":
        ids = _pick(message, customer_id="userId", anonymous_id="previousId")
    elif call == "group":
        ids = _pick(message, customer_id="userId")  # a group links no visitor
    if context:
        event["context"] = context
    return event | ids
