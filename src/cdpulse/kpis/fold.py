"""The KPI fold: what each event and each merge of a profile adds to the KPI counters.

The pipeline calls it per profile save, next to the profile rules (``pipeline.stages``):
``observe`` after an event is applied, ``merge`` before a visitor (or an admin-merged
customer) is merged in. It fills the save's ``Tally``, which ``write.lua`` adds to the
counters only if the save's compare-and-set passes: an event is counted once, as it is
applied once, whatever the redeliveries, retries and crashes.

Consent: a customer counts while its consent allows ``analytics``, the purpose that
decides whether the profile keeps its events at all (``privacy.consent``). The events
the profile applied before a refusal was known stay counted (they are sums over many
customers: nothing of the customer can be read back from them), and the state the
distinct counts need goes with the rest of the profile (``rules.minimise``). The demand
the forecasts learn (``kpis.fields``: the shop's orders and revenue, units and line
revenue by category and product) counts every order whatever the consent: it is decided
by the order alone, so it does not depend on the order the topics were read in.
"""

from __future__ import annotations

from cdpulse.contract.mirror import (
    EmailClickedEvent,
    EmailOpenedEvent,
    Event,
    OfferRedeemedEvent,
    OfferShownEvent,
    OrderCompleted,
    OrderCompletedEvent,
    OrderRefundedEvent,
    ProductViewedEvent,
)
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.kpis import distinct, orders, sessions
from cdpulse.kpis.fields import (
    CAMPAIGN,
    CART,
    CART_ADDS,
    CATEGORY,
    CHANNEL,
    CHANNELS,
    CHECKOUT,
    CHECKOUTS,
    DAY,
    DAY_MS,
    DEMAND_ORDERS,
    DEMAND_REVENUE,
    EMAIL_CLICKERS,
    EMAIL_CLICKS,
    EMAIL_OPENERS,
    EMAIL_OPENS,
    IDENTIFIED,
    NEWSLETTER,
    OFFER,
    OFFER_ORDERS,
    OFFER_REVENUE,
    OFFER_VIEWS,
    OFFERS_REDEEMED,
    OFFERS_SHOWN,
    ORDER,
    ORDERS,
    PRODUCT,
    PRODUCT_VIEWS,
    RECO_ORDERS,
    RECO_REVENUE,
    RECO_VIEWS,
    REFUNDED,
    REFUNDS,
    REVENUE,
    UNITS,
    VIEW,
    VISIT,
    campaign_of,
    cents,
    field,
)
from cdpulse.kpis.tally import Tally
from cdpulse.privacy.consent import allows
from cdpulse.profile.activity import EMAILS_KEPT, Activity
from cdpulse.profile.model import Profile

# The clickstream makes sessions (``profile.rules.SESSION_TYPES``): every type on it is a
# visit, custom events too; so is an order. Some are a step of the funnel as well.
_SESSION_TYPES = frozenset(t for t, stream in STREAM_OF_TYPE.items() if stream == "clickstream")
_STEPS = {
    **dict.fromkeys(_SESSION_TYPES, VISIT),
    "product_viewed": VISIT | VIEW,
    "product_added": VISIT | CART,
    "checkout_started": VISIT | CHECKOUT,
    "order_completed": VISIT | ORDER,
}
_COUNTED = {
    "product_viewed": PRODUCT_VIEWS,
    "product_added": CART_ADDS,
    "checkout_started": CHECKOUTS,
}
_SHIFT = {name: 8 * (n + 1) for n, name in enumerate(CHANNELS)}  # ``fields.flags_of``
# metric -> channel -> field name, so the fold never formats a name per event
_BY_CHANNEL = {
    metric: {channel: field(metric, CHANNEL, channel) for channel in CHANNELS}
    for metric in (PRODUCT_VIEWS, CART_ADDS, CHECKOUTS, ORDERS, REVENUE, REFUNDS, REFUNDED)
}


class KpiFold:
    """Counts a profile's events and merges into the KPI counters (``Tally``)."""

    def __init__(self, session_gap: int) -> None:
        self.session_gap = session_gap

    def observe(
        self, profile: Profile, event: Event, spans: list[tuple[int, int]], tally: Tally
    ) -> None:
        """Count ``event``, just applied to ``profile``; ``spans``: the profile's session
        spans as they were before it (the list itself, not a copy: the rules replace it
        when a late event changes it, and change its last span in place only where that
        opens no session, which is what ``sessions.event`` then finds)."""
        if type(event) is OrderCompletedEvent:
            # Demand counts every order whatever the consent: the consent known when an
            # order is applied depends on which topic the worker read first (a refusal
            # comes on cdp.customers, the order on cdp.transactions), and the forecasts
            # must learn the same days live and in a replay. These are the shop's sales
            # summed over everyone, read off the order alone; the profile keeps nothing.
            _demand(tally.day(event.at // DAY_MS), event.properties)
        if profile.consent and not allows(profile, "analytics"):
            return  # withheld: not counted, and the profile keeps nothing to count with
        activity = profile.activity
        if activity is None:
            activity = profile.activity = Activity()
        t = event.at
        day = t // DAY_MS
        kind = event.type
        channel = event.channel
        context = event.context
        campaign = None
        if context is not None and context.campaign is not None:
            campaign = campaign_of(context)
            if campaign is not None:  # before an order it attributes
                orders.touch(activity, t, campaign, self.session_gap, tally)
        steps = _STEPS.get(kind)
        if steps is not None:
            if event.customer_id is not None:
                steps |= IDENTIFIED
            flags = steps | (steps << _SHIFT[channel])
            if flags & ~activity.days.get(day, 0):
                distinct.set_flags(activity, day, flags, tally)
            if kind in _SESSION_TYPES:
                if spans and spans[-1][0] <= t <= spans[-1][1] + self.session_gap:
                    pass  # the newest session goes on: what most events do
                else:
                    sessions.event(spans, t, self.session_gap, tally)
                counted = _COUNTED.get(kind)
                if counted is not None:
                    _add(tally.day(day), counted, 1, channel, campaign)
                if type(event) is ProductViewedEvent:
                    viewed = event.properties
                    if viewed.recommendation_id is not None:
                        tally.add(DAY, day, RECO_VIEWS, 1)
                    if viewed.offer_id is not None:
                        _by(tally, day, OFFER_VIEWS, 1, OFFER, viewed.offer_id)
                return
        if type(event) is OrderCompletedEvent:
            order = event.properties
            amount = cents(order.revenue)
            fields = tally.day(day)
            _add(fields, ORDERS, 1, channel, campaign)
            _add(fields, REVENUE, amount, channel, campaign)
            orders.order(activity, t, amount, tally)
            if order.recommendation_id is not None:
                tally.add(DAY, day, RECO_ORDERS, 1)
                tally.add(DAY, day, RECO_REVENUE, amount)
            if order.offer_id is not None:
                _by(tally, day, OFFER_ORDERS, 1, OFFER, order.offer_id)
                _by(tally, day, OFFER_REVENUE, amount, OFFER, order.offer_id)
        elif type(event) is OrderRefundedEvent:
            fields = tally.day(day)
            _add(fields, REFUNDS, 1, channel, campaign)
            _add(fields, REFUNDED, cents(event.properties.amount), channel, campaign)
        elif type(event) is EmailOpenedEvent:
            newsletter = event.properties.campaign_id
            _by(tally, day, EMAIL_OPENS, 1, NEWSLETTER, newsletter)
            _first_email(activity, newsletter, t, 0, tally)
        elif type(event) is EmailClickedEvent:
            newsletter = event.properties.campaign_id
            _by(tally, day, EMAIL_CLICKS, 1, NEWSLETTER, newsletter)
            _first_email(activity, newsletter, t, 1, tally)
        elif type(event) is OfferShownEvent:
            _by(tally, day, OFFERS_SHOWN, 1, OFFER, event.properties.offer_id)
        elif type(event) is OfferRedeemedEvent:
            _by(tally, day, OFFERS_REDEEMED, 1, OFFER, event.properties.offer_id)

    def merge(self, profile: Profile, other: Profile) -> tuple[Activity | None, Tally]:
        """The state ``profile`` will have once ``other`` is merged into it, and what
        that changes in the counters; neither profile is changed. The caller adopts both
        only if the merged profile still allows analytics."""
        tally = Tally()
        mine, theirs = profile.activity, other.activity
        if mine is None or theirs is None:
            # Only one was ever counted (the other is new, or kept nothing: consent).
            return (mine if theirs is None else _copy(theirs)), tally
        joined = distinct.merge(mine, theirs, tally)
        joined.orders = list(mine.orders)
        joined.orders_dropped = mine.orders_dropped
        joined.first_touch = mine.first_touch
        joined.touches = list(mine.touches)
        orders.merge(joined, theirs, self.session_gap, tally)
        joined.emails = _merge_emails(mine.emails, theirs.emails, tally)
        sessions.merge(profile.spans, other.spans, self.session_gap, tally)
        return joined, tally


def _copy(activity: Activity) -> Activity:
    """A copy that shares nothing mutable with ``activity`` (a retired profile's)."""
    return Activity(
        dict(activity.days),
        activity.first_visit,
        activity.first_order,
        list(activity.orders),
        activity.orders_dropped,
        activity.first_touch,
        list(activity.touches),
        dict(activity.emails),
    )


def _add(
    fields: dict[str, int], metric: str, amount: int, channel: str, campaign: str | None
) -> None:
    """An additive metric into a day's counters: in total, by the event's channel and
    by its visit's campaign."""
    fields[metric] = fields.get(metric, 0) + amount
    name = _BY_CHANNEL[metric][channel]
    fields[name] = fields.get(name, 0) + amount
    if campaign is not None:
        name = field(metric, CAMPAIGN, campaign)
        fields[name] = fields.get(name, 0) + amount


def _demand(fields: dict[str, int], order: OrderCompleted) -> None:
    """An order in the shop's demand, and its units and line revenue by category and by
    product (what the forecasts learn): a line's revenue is its price in cents times its
    quantity."""
    fields[DEMAND_ORDERS] = fields.get(DEMAND_ORDERS, 0) + 1
    fields[DEMAND_REVENUE] = fields.get(DEMAND_REVENUE, 0) + cents(order.revenue)
    for item in order.items:
        units = item.quantity
        line = cents(item.price) * units
        for name in (field(UNITS, CATEGORY, item.category), field(UNITS, PRODUCT, item.product_id)):
            fields[name] = fields.get(name, 0) + units
        for name in (
            field(REVENUE, CATEGORY, item.category),
            field(REVENUE, PRODUCT, item.product_id),
        ):
            fields[name] = fields.get(name, 0) + line


def _by(tally: Tally, day: int, metric: str, amount: int, dimension: str, value: str) -> None:
    tally.add(DAY, day, metric, amount)
    tally.add(DAY, day, field(metric, dimension, value), amount)


_UNIQUE = (EMAIL_OPENERS, EMAIL_CLICKERS)


def _first_email(activity: Activity, newsletter: str, t: int, which: int, tally: Tally) -> None:
    """A customer opens (0) or clicks (1) a newsletter: counted once, on the first day."""
    emails = activity.emails
    times = emails.get(newsletter, (-1, -1))
    first = times[which]
    if 0 <= first <= t:
        return
    if first >= 0:
        _by(tally, first // DAY_MS, _UNIQUE[which], -1, NEWSLETTER, newsletter)
    _by(tally, t // DAY_MS, _UNIQUE[which], 1, NEWSLETTER, newsletter)
    emails[newsletter] = (t, times[1]) if which == 0 else (times[0], t)
    if len(emails) > EMAILS_KEPT:
        del emails[min(emails, key=lambda n: (max(emails[n]), n))]


def _merge_emails(
    mine: dict[str, tuple[int, int]], theirs: dict[str, tuple[int, int]], tally: Tally
) -> dict[str, tuple[int, int]]:
    """Both customers' newsletters: one that both opened (or clicked) counts once."""
    out = dict(mine)
    for newsletter, (opened, clicked) in theirs.items():
        kept = out.get(newsletter)
        if kept is None:
            out[newsletter] = (opened, clicked)
            continue
        joined = []
        for which, (a, b) in enumerate(((kept[0], opened), (kept[1], clicked))):
            if a >= 0 and b >= 0:
                # Both counted it: the later one goes.
                tally.add(DAY, max(a, b) // DAY_MS, _UNIQUE[which], -1, False)
                later = field(_UNIQUE[which], NEWSLETTER, newsletter)
                tally.add(DAY, max(a, b) // DAY_MS, later, -1, False)
            joined.append(min(a, b) if a >= 0 and b >= 0 else max(a, b))
        out[newsletter] = (joined[0], joined[1])
    while len(out) > EMAILS_KEPT:
        del out[min(out, key=lambda n: (max(out[n]), n))]
    return out
