"""The event contract: every event cdpulse accepts, as pydantic v2 models.

An event is an envelope (``event_id``, ``type``, ``timestamp``, ids, ``channel``,
``context``) around ``properties`` whose shape depends on ``type``. ``Event`` is the
discriminated union of all types; ``validation.decode`` turns raw Kafka bytes into
one of them or into a ``Rejection`` with a precise reason.

>>> e = EVENT_ADAPTER.validate_python({
...     "event_id": "e1", "type": "product_viewed", "timestamp": 1700000000000,
...     "anonymous_id": "a-1", "channel": "web",
...     "properties": {"product_id": "P-1", "category": "shoes", "price": 59.0}})
>>> e.timestamp.isoformat(), e.key
('2023-11-14T22:13:20+00:00', 'a-1')
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)


def parse_timestamp(value: Any) -> datetime:
    """Accept epoch milliseconds (int) or RFC 3339 text that carries an offset.

    Raises ValueError for anything else, including a time that exists with its offset
    but not in UTC (``0001-01-01T00:00:00+01:00``): one odd message must never raise
    anything a caller does not expect.
    """
    # The messages never quote the value: a rejection's detail goes to the dead-letter
    # topic, and a wrong-typed field may hold anything (an email address, a phone number).
    if isinstance(value, bool):
        raise ValueError("timestamp must be RFC 3339 text or epoch milliseconds, got a boolean")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("timestamp must be a finite number of epoch milliseconds")
        if not 0 <= value < 32503680000000:  # year 3000
            raise ValueError("timestamp is not epoch milliseconds between 1970 and 3000")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError("timestamp is not RFC 3339 (e.g. 2026-11-26T10:00:00Z)") from None
        if parsed.tzinfo is None:
            raise ValueError("timestamp has no UTC offset; add Z or +hh:mm")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp is out of range in UTC") from None
    raise ValueError("timestamp must be RFC 3339 text or epoch milliseconds")


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str),
    WithJsonSchema(
        {
            "description": "Event time: RFC 3339 with an offset, or epoch milliseconds.",
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0},
            ],
        }
    ),
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, StringConstraints(max_length=2048)]
Money = Annotated[float, Field(ge=0, le=1e12)]
Quantity = Annotated[int, Field(ge=1, le=100_000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Channel = Literal["web", "app", "email", "store", "call_center", "partner"]


class _Model(BaseModel):
    # strict: "3" is not a price. allow_inf_nan=False: NaN and Infinity are rejected.
    # extra="ignore": unknown fields are dropped, never stored or forwarded.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


# --- context -----------------------------------------------------------------------------


class Campaign(_Model):
    """UTM parameters of the visit."""

    source: Text | None = None
    medium: Text | None = None
    name: Text | None = None
    term: Text | None = None
    content: Text | None = None


class Context(_Model):
    """Where the event happened: device, locale, campaign."""

    user_agent: Text | None = None
    locale: Annotated[str, StringConstraints(max_length=35)] | None = None
    campaign: Campaign | None = None


# --- properties per type -----------------------------------------------------------------


class PageViewed(_Model):
    url: Text
    title: Text | None = None
    referrer: Text | None = None


class ProductViewed(_Model):
    product_id: Id
    category: Id
    price: Money
    # What led to the view, for click-through (README: Live KPIs): a recommendation
    # list's id, an offer's id.
    recommendation_id: Id | None = None
    offer_id: Id | None = None


class SearchPerformed(_Model):
    query: Annotated[str, StringConstraints(max_length=512)]
    results: Annotated[int, Field(ge=0)] | None = None


class ProductAdded(_Model):
    product_id: Id
    category: Id
    price: Money
    quantity: Quantity = 1


class ProductRemoved(_Model):
    product_id: Id
    quantity: Quantity = 1


class CheckoutStarted(_Model):
    cart_value: Money | None = None


class LineItem(_Model):
    product_id: Id
    category: Id
    price: Money
    quantity: Quantity


class OrderCompleted(_Model):
    order_id: Id
    revenue: Money
    currency: Currency
    items: Annotated[list[LineItem], Field(min_length=1, max_length=500)]
    # What the order is attributed to (README: Live KPIs): as on ``ProductViewed``.
    recommendation_id: Id | None = None
    offer_id: Id | None = None


class OrderRefunded(_Model):
    order_id: Id
    amount: Money
    currency: Currency
    reason: Text | None = None


# Numbers a MessagePack profile can hold (64-bit integers).
TraitNumber = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
TraitValue = Annotated[str, StringConstraints(max_length=512)] | float | TraitNumber | bool | None


class Identify(_Model):
    traits: Annotated[dict[Id, TraitValue], Field(max_length=100)] = Field(default_factory=dict)


class Purposes(_Model):
    """Consent per purpose; a purpose left out keeps its previous state."""

    analytics: bool | None = None
    personalization: bool | None = None
    marketing: bool | None = None


class ConsentUpdated(_Model):
    purposes: Purposes


class ErasureRequested(_Model):
    """The right to erasure: everything about the customer is removed (README)."""

    requested_by: Id | None = None  # who asked: a token name, an operator, a system
    reason: Text | None = None


class CustomersMerged(_Model):
    """Two known customers are one: ``merged_id`` is merged into the event's
    ``customer_id``, the survivor (README: Identity rules, the admin merge)."""

    merged_id: Id  # the customer merged away
    requested_by: Id | None = None  # who asked: the admin token's name


class EmailOpened(_Model):
    campaign_id: Id
    message_id: Id | None = None


class EmailClicked(_Model):
    campaign_id: Id
    url: Text | None = None


class OfferShown(_Model):
    offer_id: Id
    placement: Text | None = None


class OfferRedeemed(_Model):
    offer_id: Id
    order_id: Id | None = None
    value: Money | None = None


# --- custom events -------------------------------------------------------------------------

# A custom event's name is what a segment reads: ``custom.<name>`` and ``custom.<name>_7d``.
# So it is snake_case, and a name ending like a window would read as another name's window.
# The suffixes are the profile's window names (``profile/windows.py``; a test holds them equal).
CUSTOM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
WINDOW_SUFFIXES: tuple[str, ...] = ("_1h", "_24h", "_7d", "_30d")


_CUSTOM_NAME = re.compile(CUSTOM_NAME_PATTERN.removesuffix("$") + r"\Z")


def custom_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a custom event, or None.

    Never quotes the name: a rejection's detail goes to the dead-letter topic.
    """
    if not _CUSTOM_NAME.match(name):
        return (
            "must be snake_case: a lower-case letter, then lower-case letters, digits and _, "
            "at most 64 characters"
        )
    if name in EVENT_TYPES:
        return "is a built-in event type's name; send the event as that type"
    if name.endswith(WINDOW_SUFFIXES):
        return (
            f"must not end in {', '.join(WINDOW_SUFFIXES)}: segments read "
            "custom.<name>_7d as the 7-day count of <name>"
        )
    return None


# How deep a custom event's properties may nest (the properties object is level 1).
# Bounded so that every decoder reads the same events: pydantic stops near 255 levels,
# msgspec near 1,000; a tracking plan needs a few.
CUSTOM_DEPTH = 32


def custom_properties_problem(properties: Any) -> str | None:
    """Why a custom event's (JSON) properties cannot be taken, or None: too deep, or a
    number JSON cannot hold (NaN, Infinity). Iterative: any depth gives an answer."""
    stack = [(properties, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is float:
            if not math.isfinite(node):
                return "holds NaN or Infinity; JSON numbers are finite"
        elif kind is dict or kind is list:
            if depth > CUSTOM_DEPTH:
                return f"nest deeper than {CUSTOM_DEPTH} levels; flatten them"
            stack.extend((child, depth + 1) for child in (node.values() if kind is dict else node))
    return None


def _custom_properties(properties: Any) -> Any:
    problem = custom_properties_problem(properties) if isinstance(properties, dict) else None
    if problem is not None:
        raise ValueError(problem)
    return properties


def _custom_name(name: str) -> str:
    problem = custom_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


CustomName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=CUSTOM_NAME_PATTERN),
    AfterValidator(_custom_name),
]


# --- envelope ----------------------------------------------------------------------------


class _Envelope(_Model):
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}]}
    )

    event_id: Id
    timestamp: Timestamp
    customer_id: Id | None = None
    anonymous_id: Id | None = None
    channel: Channel
    context: Context | None = None

    @model_validator(mode="after")
    def _has_an_id(self) -> _Envelope:
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("an event needs customer_id or anonymous_id (or both)")
        return self

    @property
    def key(self) -> str:
        """The Kafka message key and the profile id: customer_id, else anonymous_id."""
        return self.customer_id or self.anonymous_id  # type: ignore[return-value]


class PageViewedEvent(_Envelope):
    type: Literal["page_viewed"]
    properties: PageViewed


class ProductViewedEvent(_Envelope):
    type: Literal["product_viewed"]
    properties: ProductViewed


class SearchPerformedEvent(_Envelope):
    type: Literal["search_performed"]
    properties: SearchPerformed


class ProductAddedEvent(_Envelope):
    type: Literal["product_added"]
    properties: ProductAdded


class ProductRemovedEvent(_Envelope):
    type: Literal["product_removed"]
    properties: ProductRemoved


class CheckoutStartedEvent(_Envelope):
    type: Literal["checkout_started"]
    properties: CheckoutStarted = CheckoutStarted()


class OrderCompletedEvent(_Envelope):
    type: Literal["order_completed"]
    properties: OrderCompleted


class OrderRefundedEvent(_Envelope):
    type: Literal["order_refunded"]
    properties: OrderRefunded


class IdentifyEvent(_Envelope):
    """Links ``anonymous_id`` (when given) to ``customer_id``; both must be known ids."""

    type: Literal["identify"]
    properties: Identify = Identify()

    @model_validator(mode="after")
    def _needs_customer(self) -> IdentifyEvent:
        if self.customer_id is None:
            raise ValueError("identify needs customer_id")
        return self


class ConsentUpdatedEvent(_Envelope):
    type: Literal["consent_updated"]
    properties: ConsentUpdated


class ErasureRequestedEvent(_Envelope):
    """Erase the customer (or the visitor's customer) named by the event's key."""

    type: Literal["erasure_requested"]
    properties: ErasureRequested = ErasureRequested()


class CustomersMergedEvent(_Envelope):
    """Merge ``properties.merged_id`` into ``customer_id``; only POST /v1/admin/merges
    publishes it."""

    type: Literal["customers_merged"]
    properties: CustomersMerged

    @model_validator(mode="after")
    def _needs_customer(self) -> CustomersMergedEvent:
        if self.customer_id is None:
            raise ValueError("customers_merged needs customer_id (the surviving customer)")
        return self


class EmailOpenedEvent(_Envelope):
    type: Literal["email_opened"]
    properties: EmailOpened


class EmailClickedEvent(_Envelope):
    type: Literal["email_clicked"]
    properties: EmailClicked


class OfferShownEvent(_Envelope):
    type: Literal["offer_shown"]
    properties: OfferShown


class OfferRedeemedEvent(_Envelope):
    type: Literal["offer_redeemed"]
    properties: OfferRedeemed


class CustomEvent(_Envelope):
    """An event of the sender's own tracking plan (``Wishlist Added``, ``Video Played``):
    counted per ``name`` in the profile (``custom_counts``), its ``properties`` free-form
    JSON, held to the operator's JSON Schema for ``name`` when one is registered
    (``contract/custom_schemas.py``)."""

    type: Literal["custom"]
    name: CustomName = Field(
        description="snake_case; not a built-in event type's name, not ending in "
        + ", ".join(WINDOW_SUFFIXES)
    )
    # Checked before pydantic reads them: NaN and depth get one clear error, not one per
    # member of JsonValue's union (or pydantic's recursion limit).
    properties: Annotated[dict[str, JsonValue], BeforeValidator(_custom_properties)] = Field(
        default_factory=dict
    )


EVENT_CLASSES: tuple[type[_Envelope], ...] = (
    PageViewedEvent,
    ProductViewedEvent,
    SearchPerformedEvent,
    ProductAddedEvent,
    ProductRemovedEvent,
    CheckoutStartedEvent,
    OrderCompletedEvent,
    OrderRefundedEvent,
    IdentifyEvent,
    ConsentUpdatedEvent,
    EmailOpenedEvent,
    EmailClickedEvent,
    OfferShownEvent,
    OfferRedeemedEvent,
    ErasureRequestedEvent,
    CustomersMergedEvent,
    CustomEvent,
)

Event = Annotated[
    PageViewedEvent
    | ProductViewedEvent
    | SearchPerformedEvent
    | ProductAddedEvent
    | ProductRemovedEvent
    | CheckoutStartedEvent
    | OrderCompletedEvent
    | OrderRefundedEvent
    | IdentifyEvent
    | ConsentUpdatedEvent
    | EmailOpenedEvent
    | EmailClickedEvent
    | OfferShownEvent
    | OfferRedeemedEvent
    | ErasureRequestedEvent
    | CustomersMergedEvent
    | CustomEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for cls in EVENT_CLASSES
)
