"""What a customer does in the synthetic shop, turned into events.

A ``Storefront`` plays visits (a session funnel: landing page, browsing and searching,
cart, checkout, order), newsletter opens and clicks, store purchases and late refunds.
Each event goes to ``push(timestamp_ms, event)`` with empty ``event_id`` and
``timestamp``: the shop fills them in once the events are in global time order.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdpulse.simulate.catalogue import Catalogue, Product
from cdpulse.simulate.population import DAY_MS, SESSION_CHANNELS, Customer

Event = dict[str, Any]
Push = Callable[[int, Event], None]

SHOP_URL = "https://shop.example"
CURRENCY = "EUR"

CONSENT_SHARE = 0.6  # customers who answer the consent banner on their first visit
LOGIN_RATE = 0.3  # P(an anonymous visitor who will log in does so at a session's start)
FAVOURITE_SHARE = 0.8  # views that go to the customer's preferred categories
SEARCH_SHARE = 0.12
CATEGORY_PAGE_SHARE = 0.13
ADD_RATE_BUYING = 0.45
ADD_RATE_BROWSING = 0.03
REMOVE_RATE = 0.1
CHECKOUT_RATE_BUYING = 0.8
CHECKOUT_RATE_BROWSING = 0.08
OFFER_RATE = 0.12
REDEEM_RATE = 0.4
REFUND_RATE = 0.06
CLICK_RATE = 0.3  # P(click | newsletter opened)
MEAN_INTENT = 0.25  # the mean purchase intent (population: Beta(2, 6))

_OFFERS: tuple[tuple[str, float], ...] = (("welcome10", 0.10), ("winter15", 0.15))
_REFUND_REASONS: tuple[str, ...] = ("damaged", "wrong_size", "changed_mind", "late_delivery")
_USER_AGENTS: dict[str, tuple[str, ...]] = {
    "web": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    "app": ("ShopApp/4.2 (iOS 18.1)", "ShopApp/4.2 (Android 15)"),
}
_SEARCH_WORDS: tuple[str, ...] = ("cheap", "best", "new", "gift", "sale", "premium", "small")


@dataclass(slots=True)
class Visitor:
    """A customer's state while the shop runs: who they are known as, what they allowed."""

    customer: Customer
    limit_ms: int  # no event at or after this instant: churn_at or the end of the run
    identified: bool
    seen: bool = False
    marketing: bool | None = None
    identified_at_ms: int | None = None
    busy_until_ms: int = 0  # the next visit starts no earlier: the last one's end + a gap
    reading_hour: int = 9  # the hour of the day (UTC) the customer usually reads email
    ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._update_ids()

    def identify(self, ts_ms: int) -> None:
        """From now on the visitor's events carry customer_id."""
        self.identified = True
        self.identified_at_ms = ts_ms
        self._update_ids()

    def _update_ids(self) -> None:
        customer = self.customer
        # once logged in, the web and app SDKs keep sending the anonymous cookie id too
        if self.identified:
            self.ids = {"customer_id": customer.customer_id}
            if customer.anonymous_id is not None:
                self.ids["anonymous_id"] = customer.anonymous_id
        else:
            assert customer.anonymous_id is not None, "an unidentified visitor is anonymous"
            self.ids = {"anonymous_id": customer.anonymous_id}


class Storefront:
    """Plays sessions, newsletters, store purchases and refunds into ``push``."""

    def __init__(
        self, rng: random.Random, catalogue: Catalogue, push: Push, responsive: bool = False
    ) -> None:
        self.rng = rng
        self.catalogue = catalogue
        self._push = push
        self._orders = 0
        self.responsive = responsive

    def click_rate(self, c: Customer) -> float:
        """P(click | newsletter opened): ``CLICK_RATE`` for everyone, or (``responsive``)
        as much in the mean but in proportion to the customer's purchase intent, which
        their orders show: the learnable pattern of campaign response."""
        if not self.responsive:
            return CLICK_RATE
        return min(0.9, CLICK_RATE * c.purchase_intent / MEAN_INTENT)

    # --- the session funnel ---------------------------------------------------------------

    def session(self, v: Visitor, start_ms: int, campaign: str | None = None) -> int:
        """One visit on the web or in the app; returns the time of its last event."""
        rng, c = self.rng, v.customer
        channel = SESSION_CHANNELS[rng.random() < c.app_share]
        context: Event = {"user_agent": rng.choice(_USER_AGENTS[channel]), "locale": c.locale}
        if campaign is not None:
            context["campaign"] = {"source": "newsletter", "medium": "email", "name": campaign}
        ts = start_ms
        landing = SHOP_URL + "/" if campaign is None else f"{SHOP_URL}/?utm_campaign={campaign}"
        self._emit(v, ts, "page_viewed", channel, {"url": landing, "title": "Home"}, context)
        if not v.seen:
            v.seen = True
            if rng.random() < CONSENT_SHARE:
                ts += self._gap()
                self._consent(v, ts, channel, context)
            if v.identified:
                ts += self._gap()
                self._identify(v, ts, channel, context)
        if not v.identified and c.identifies and rng.random() < LOGIN_RATE:
            ts += self._gap()
            self._identify(v, ts, channel, context)
        offer = None
        if rng.random() < OFFER_RATE:
            offer = rng.choice(_OFFERS)
            ts += self._gap()
            props: Event = {"offer_id": offer[0], "placement": "homepage"}
            self._emit(v, ts, "offer_shown", channel, props, context)
        buying = rng.random() < c.purchase_intent
        wanted = 1 + poisson(rng, c.basket_size - 1) if buying else 0
        cart: dict[str, tuple[Product, int]] = {}
        for _ in range(1 + int(rng.expovariate(1 / c.browse_depth))):
            ts += self._gap()
            ts = self._browse_step(v, ts, channel, context, cart, wanted)
        if cart and rng.random() < REMOVE_RATE:
            product, quantity = cart.pop(rng.choice(list(cart)))
            ts += self._gap()
            props = {"product_id": product.product_id, "quantity": quantity}
            self._emit(v, ts, "product_removed", channel, props, context)
        checkout_rate = CHECKOUT_RATE_BUYING if buying else CHECKOUT_RATE_BROWSING
        if not cart or rng.random() >= checkout_rate:
            return ts  # abandoned cart, or nothing in it
        if not v.identified:
            if not c.identifies:
                return ts  # the login wall at checkout: a guest who never signs up leaves
            ts += self._gap()
            self._identify(v, ts, channel, context)
        lines = list(cart.values())
        ts += self._gap()
        props = {"cart_value": _cents_total(lines) / 100}
        self._emit(v, ts, "checkout_started", channel, props, context)
        if rng.random() >= c.conversion_rate:
            return ts
        ts += rng.randrange(30_000, 180_000)
        order_id, revenue_cents = self._order(v, ts, channel, lines, context)
        if offer is not None and rng.random() < REDEEM_RATE:
            ts += 1_000
            value = round(revenue_cents * offer[1]) / 100
            props = {"offer_id": offer[0], "order_id": order_id, "value": value}
            self._emit(v, ts, "offer_redeemed", channel, props, context)
        return ts

    def _browse_step(
        self,
        v: Visitor,
        ts: int,
        channel: str,
        context: Event,
        cart: dict[str, tuple[Product, int]],
        wanted: int,
    ) -> int:
        rng = self.rng
        category = self._category(v.customer)
        roll = rng.random()
        if roll < SEARCH_SHARE:
            query = f"{rng.choice(_SEARCH_WORDS)} {category}"
            props: Event = {"query": query, "results": rng.randrange(0, 60)}
            self._emit(v, ts, "search_performed", channel, props, context)
            return ts
        if roll < SEARCH_SHARE + CATEGORY_PAGE_SHARE:
            props = {"url": f"{SHOP_URL}/c/{category}", "title": category.title()}
            self._emit(v, ts, "page_viewed", channel, props, context)
            return ts
        product = self.catalogue.pick(rng, category, v.customer.spend_tier)
        props = {"product_id": product.product_id, "category": category, "price": product.price}
        self._emit(v, ts, "product_viewed", channel, props, context)
        add_rate = ADD_RATE_BUYING if len(cart) < wanted else ADD_RATE_BROWSING
        if product.product_id not in cart and rng.random() < add_rate:
            quantity = rng.choices((1, 2, 3), weights=(85, 11, 4))[0]
            cart[product.product_id] = (product, quantity)
            ts += self._gap()
            props = {**props, "quantity": quantity}
            self._emit(v, ts, "product_added", channel, props, context)
        return ts

    # --- other touch points ---------------------------------------------------------------

    def newsletter(
        self, v: Visitor, sent_ms: int, campaign: str, read_ms: int | None = None
    ) -> int | None:
        """A newsletter reaching ``v``: maybe opened, maybe clicked; returns the click time.

        ``read_ms``: when the customer sits down to their email that day (within half an
        hour after it they open); None: whenever, a few hours after it was sent."""
        rng = self.rng
        if rng.random() >= v.customer.email_open_rate:
            return None
        ids = {"customer_id": v.customer.customer_id}
        delay = int(rng.expovariate(1 / 10_800_000))  # mean 3 hours
        opened = sent_ms + delay if read_ms is None else max(sent_ms, read_ms) + delay % 1_800_000
        props = {"campaign_id": campaign, "message_id": f"{campaign}-{ids['customer_id']}"}
        self._emit(v, opened, "email_opened", "email", props, ids=ids)
        if rng.random() >= self.click_rate(v.customer):
            return None
        clicked = opened + rng.randrange(5_000, 120_000)
        props = {"campaign_id": campaign, "url": f"{SHOP_URL}/?utm_campaign={campaign}"}
        self._emit(v, clicked, "email_clicked", "email", props, ids=ids)
        return clicked

    def store_purchase(self, v: Visitor, ts: int) -> None:
        """A purchase at the till, identified by the loyalty card: no clickstream."""
        c = v.customer
        # dict.fromkeys dedupes in draw order; a set's order would follow PYTHONHASHSEED
        categories = dict.fromkeys(self._category(c) for _ in range(self.rng.choice((1, 1, 2, 3))))
        lines = [
            (self.catalogue.pick(self.rng, category, c.spend_tier), 1) for category in categories
        ]
        self._order(v, ts, "store", lines, None, ids={"customer_id": c.customer_id})

    # --- helpers ------------------------------------------------------------------------

    def _order(
        self,
        v: Visitor,
        ts: int,
        channel: str,
        lines: list[tuple[Product, int]],
        context: Event | None,
        ids: dict[str, str] | None = None,
    ) -> tuple[str, int]:
        self._orders += 1
        order_id = f"ord-{self._orders:07d}"
        revenue_cents = _cents_total(lines)
        items = [
            {"product_id": p.product_id, "category": p.category, "price": p.price, "quantity": q}
            for p, q in lines
        ]
        props = {
            "order_id": order_id,
            "revenue": revenue_cents / 100,
            "currency": CURRENCY,
            "items": items,
        }
        self._emit(v, ts, "order_completed", channel, props, context, ids=ids)
        if self.rng.random() < REFUND_RATE:
            self._refund(v, ts, channel, order_id, revenue_cents, lines, ids)
        return order_id, revenue_cents

    def _refund(
        self,
        v: Visitor,
        ordered: int,
        channel: str,
        order_id: str,
        revenue_cents: int,
        lines: list[tuple[Product, int]],
        ids: dict[str, str] | None,
    ) -> None:
        rng = self.rng
        when = ordered + rng.randrange(DAY_MS, 14 * DAY_MS)
        if rng.random() < 0.7 or len(lines) == 1:
            cents = revenue_cents
        else:
            cents = _cents_total([rng.choice(lines)])
        props = {
            "order_id": order_id,
            "amount": cents / 100,
            "currency": CURRENCY,
            "reason": rng.choice(_REFUND_REASONS),
        }
        refund_channel = "call_center" if rng.random() < 0.3 else channel
        self._emit(v, when, "order_refunded", refund_channel, props, ids=ids)

    def _consent(self, v: Visitor, ts: int, channel: str, context: Event) -> None:
        rng = self.rng
        purposes = {
            "analytics": rng.random() < 0.85,
            "personalization": rng.random() < 0.6,
            "marketing": rng.random() < 0.4,
        }
        v.marketing = purposes["marketing"]
        self._emit(v, ts, "consent_updated", channel, {"purposes": purposes}, context)

    def _identify(self, v: Visitor, ts: int, channel: str, context: Event) -> None:
        c = v.customer
        if ts >= v.limit_ms:
            return  # the visitor churned (or the run ended) before logging in
        v.identify(ts)
        traits = {
            "email": f"{c.customer_id}@example.com",
            # Derived, not drawn: adding it left every other simulated event unchanged.
            "phone": f"+31 6 {zlib.crc32(c.customer_id.encode()) % 10**8:08d}",
            "country": c.country,
        }
        self._emit(v, ts, "identify", channel, {"traits": traits}, context)

    def _emit(
        self,
        v: Visitor,
        ts: int,
        event_type: str,
        channel: str,
        properties: Event,
        context: Event | None = None,
        ids: dict[str, str] | None = None,
    ) -> None:
        # Events past churn_at (or the end of the run) are dropped here, in one place, so
        # a session cut short by churn simply stops; everything after it is later still.
        if ts >= v.limit_ms:
            return
        event: Event = {"event_id": "", "type": event_type, "timestamp": ""}
        event.update(ids or v.ids)
        event["channel"] = channel
        if context is not None:
            event["context"] = _copy_context(context)
        event["properties"] = properties
        self._push(ts, event)

    def _category(self, c: Customer) -> str:
        if self.rng.random() < FAVOURITE_SHARE:
            return self.rng.choices(c.categories, cum_weights=c.category_cum_weights)[0]
        return self.rng.choice(self.catalogue.categories)

    def _gap(self) -> int:
        """Milliseconds between two clicks: a few seconds to a few minutes."""
        return 3_000 + int(self.rng.expovariate(1 / 30_000))


def _copy_context(context: Event) -> Event:
    # each event gets its own dicts, so a consumer that edits one event edits only that one
    copy = dict(context)
    if "campaign" in copy:
        copy["campaign"] = dict(copy["campaign"])
    return copy


def _cents_total(lines: list[tuple[Product, int]]) -> int:
    return sum(product.price_cents * quantity for product, quantity in lines)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: the means here are small)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
