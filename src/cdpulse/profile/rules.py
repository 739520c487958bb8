"""The profile update rules: ``apply(profile, event)`` and ``merge(profile, other)``.

Plain functions over plain data: no Kafka, no Redis. The worker, ``cdpulse rebuild``
and the tests run this same code, so their numbers agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdpulse.contract.custom_schemas import CustomSchemas
from cdpulse.contract.mirror import (
    ConsentUpdatedEvent,
    CustomEvent,
    Event,
    IdentifyEvent,
    OrderCompletedEvent,
    OrderRefundedEvent,
    ProductAddedEvent,
    ProductRemovedEvent,
    ProductViewedEvent,
)
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.privacy.consent import allows
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy, TraitValue
from cdpulse.profile import custom, dedupe, limits, send_hours, windows
from cdpulse.profile.limits import Dropped
from cdpulse.profile.model import CartLine, Profile
from cdpulse.settings import Settings

# Category affinity weights: a purchase says more than an add, an add more than a view.
AFFINITY_WEIGHTS = {"product_viewed": 1.0, "product_added": 3.0, "order_completed": 5.0}
# Types that make up a visit (a session); email opens or consent changes do not.
# Only clickstream makes sessions: one topic, so a customer's visits arrive in order
# and the 32 kept spans are enough whatever lag the other topics have (an order placed in a
# store or by phone is not a visit either).
SESSION_TYPES = frozenset(t for t, stream in STREAM_OF_TYPE.items() if stream == "clickstream")


@dataclass(frozen=True, slots=True)
class Rules:
    """The tunable constants of the update rules."""

    session_gap: int = 30 * windows.MINUTE
    affinity_half_life: int = 14 * windows.DAY
    # Defaults are the settings' own (``Settings`` is where they live).
    dedupe_days: int = Settings.model_fields["dedupe_window_days"].default
    dedupe_ids: int = Settings.model_fields["dedupe_ids_kept"].default
    spans_kept: int = 32
    viewed_kept: int = 20
    cart_lines_kept: int = Settings.model_fields["cart_lines_kept"].default
    affinity_kept: int = Settings.model_fields["affinity_categories_kept"].default
    # A churn label is decided up to a horizon after its day and reads 60 days before it.
    churn_days_kept: int = windows.TREND_SPAN + 32 * windows.DAY
    traits: TraitPolicy = field(default_factory=TraitPolicy)
    custom_names_kept: int = Settings.model_fields["custom_names_kept"].default
    # The registered schemas: the decode stage holds custom events to them, and their
    # names are counted whatever the cap (profile/custom.py).
    custom_schemas: CustomSchemas = field(default_factory=CustomSchemas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            traits=TraitPolicy(
                frozenset(settings.trait_allow_list),
                frozenset(settings.personal_traits),
                Pseudonymizer(settings.pseudonym_key.get_secret_value().encode()),
            ),
            session_gap=settings.session_gap_seconds * 1000,
            affinity_half_life=int(settings.affinity_half_life_days * windows.DAY),
            dedupe_days=settings.dedupe_window_days,
            dedupe_ids=settings.dedupe_ids_kept,
            cart_lines_kept=settings.cart_lines_kept,
            affinity_kept=settings.affinity_categories_kept,
            churn_days_kept=windows.TREND_SPAN
            + int((settings.churn_horizon_days + 2) * windows.DAY),
            custom_names_kept=settings.custom_names_kept,
            custom_schemas=CustomSchemas.from_settings(settings),
        )


def to_millis(event: Event) -> int:
    """The event time of ``event`` in epoch milliseconds (decoded once: ``event.at``)."""
    return event.at


def new_profile(profile_id: str) -> Profile:
    """An empty profile for ``profile_id``."""
    return Profile(id=profile_id)


def is_duplicate(profile: Profile, event_id: str, source: str | None, offset: int | None) -> bool:
    """Whether this message was applied already: re-delivered, or sent twice by a client.

    ``source`` is "topic:partition:key"; messages with one key arrive in offset order,
    so an offset at or below the last applied one is a re-delivery. A client's repeat
    is caught by the dedupe window (``profile/dedupe.py``).
    """
    if source is not None and offset is not None and offset <= profile.offsets.get(source, -1):
        return True
    return bool(profile.seen_ids) and dedupe.holds(profile.seen_ids, dedupe.hashed(event_id))


def note(profile: Profile, source: str | None, offset: int | None) -> None:
    """Record a message as applied without applying it (an admin operation such as
    ``customers_merged``): a re-delivery is then a duplicate (``is_duplicate``)."""
    if source is not None and offset is not None:
        profile.offsets[source] = offset


def apply(
    profile: Profile,
    event: Event,
    rules: Rules,
    source: str | None = None,
    offset: int | None = None,
    dropped: Dropped | None = None,
) -> bool:
    """Apply one event to ``profile`` in place; False when it was a duplicate.

    Entries the list caps drop are counted in ``dropped`` (``profile/limits.py``).
    """
    if is_duplicate(profile, event.event_id, source, offset):
        return False
    apply_new(profile, event, rules, source, offset, dropped)
    return True


def apply_new(
    profile: Profile,
    event: Event,
    rules: Rules,
    source: str | None = None,
    offset: int | None = None,
    dropped: Dropped | None = None,
) -> int:
    """``apply`` for an event known not to be a duplicate (``is_duplicate`` said so).

    Returns the event ids the dedupe window's cap dropped (counted by the caller); what
    the list caps drop is counted in ``dropped``.
    """
    if source is not None and offset is not None:
        profile.offsets[source] = offset
    capped = 0
    if rules.dedupe_ids:
        key = dedupe.hashed(event.event_id)
        capped = dedupe.add(
            profile.seen_ids,
            key,
            event.at,
            rules.dedupe_days,
            rules.dedupe_ids,
            dedupe.source_of(source),
        )

    # Once per event: comparisons instead of min/max calls, and the event's class tested
    # by identity (the mirror's structs are final: ``type(event) is`` is ``isinstance``).
    t = event.at
    name = event.type
    first = profile.events == 0
    last_seen_before = profile.last_seen
    profile.events += 1
    if first or t < profile.first_seen:
        profile.first_seen = t
    if first or t > last_seen_before:
        profile.last_seen = t
    counts = profile.counts
    counts[name] = counts.get(name, 0) + 1
    channels = profile.channels
    channels[event.channel] = channels.get(event.channel, 0) + 1
    if event.customer_id is not None and profile.customer_id is None:
        profile.customer_id = event.customer_id
    if name in SESSION_TYPES:
        _insert_span(profile, t, t, rules)

    revenue = 0.0
    orders = 0
    if type(event) is ProductViewedEvent:
        props = event.properties
        _add_affinity(
            profile, props.category, AFFINITY_WEIGHTS["product_viewed"], t, rules, dropped
        )
        _add_viewed(profile, props.product_id, t, rules)
    elif type(event) is ProductAddedEvent:
        added = event.properties
        _add_affinity(profile, added.category, AFFINITY_WEIGHTS["product_added"], t, rules, dropped)
        line = profile.cart.setdefault(added.product_id, CartLine())
        # The newest add sets the price; a tie is broken by the values themselves, so
        # arrival order never matters.
        if (t, added.price, added.category) > (line.price_at, line.price, line.category):
            line.category, line.price, line.price_at = added.category, added.price, t
        _change_cart(profile, added.product_id, t, added.quantity, rules, dropped)
    elif type(event) is ProductRemovedEvent:
        profile.cart.setdefault(event.properties.product_id, CartLine())
        removed = event.properties
        _change_cart(profile, removed.product_id, t, -removed.quantity, rules, dropped)
    elif type(event) is OrderCompletedEvent:
        order = event.properties
        orders, revenue = 1, order.revenue
        profile.orders += 1
        profile.revenue += order.revenue
        profile.first_order_at = (
            t if profile.first_order_at is None else min(profile.first_order_at, t)
        )
        profile.last_order_at = (
            t if profile.last_order_at is None else max(profile.last_order_at, t)
        )
        for item in order.items:
            weight = AFFINITY_WEIGHTS["order_completed"]
            _add_affinity(profile, item.category, weight, t, rules, dropped)
        _clear_cart(profile, t)
    elif type(event) is OrderRefundedEvent:
        profile.refunds += 1
        profile.refunded += event.properties.amount
    elif type(event) is ConsentUpdatedEvent:
        for purpose, granted in event.properties.purposes.given().items():
            _set_consent(profile, purpose, t, granted)
    elif type(event) is IdentifyEvent:
        profile.identified_at = (
            t if profile.identified_at is None else min(profile.identified_at, t)
        )
        anonymous_id = event.anonymous_id
        if (
            anonymous_id is not None
            and anonymous_id != profile.id
            and anonymous_id not in profile.anonymous_ids
        ):
            profile.anonymous_ids.append(anonymous_id)
        for name, value in rules.traits.admit(event.properties.traits).items():
            _set_trait(profile, name, t, value)
    elif type(event) is CustomEvent:
        custom.count(
            profile,
            event.name,
            t,
            registered=rules.custom_schemas.names,
            kept=rules.custom_names_kept,
            dropped=dropped,
        )

    windows.add(profile.buckets, t, 1, orders, revenue)
    if name in send_hours.WEIGHTS:
        send_hours.add(profile.send_hours, name, t, event.timestamp, profile.last_seen)
    send_hours.note_offset(profile.utc_offsets, t, event.timestamp, profile.last_seen)
    if send_hours.moved(last_seen_before, profile.last_seen):
        if profile.send_hours:
            send_hours.prune(profile.send_hours, profile.last_seen)
        if profile.utc_offsets:
            send_hours.prune(profile.utc_offsets, profile.last_seen, 1)
    # Pruning reads every bucket: needed only when the newest time moved to a new bucket,
    # or a late event may have added one out of reach.
    if first or t < last_seen_before:
        windows.prune(profile.buckets, profile.last_seen)
    elif windows.moved(last_seen_before, profile.last_seen):
        windows.prune(profile.buckets, profile.last_seen, since=last_seen_before)
        if profile.custom_counts:
            custom.prune_all(profile)
    if event.customer_id is not None:
        _add_churn_day(profile, t, orders, revenue, rules.churn_days_kept)
    if profile.consent and not allows(profile, "analytics"):  # none given: the default
        minimise(profile)
    return capped


def merge(profile: Profile, other: Profile, rules: Rules, dropped: Dropped | None = None) -> int:
    """Merge ``other`` (an anonymous visitor's profile) into ``profile`` in place.

    Exact because every field is a mergeable summary of a set of events; merging the
    same ``other`` twice is prevented by ``merged_from``. Returns the event ids the
    dedupe window's cap dropped; the list caps apply as in ``apply`` (counted in
    ``dropped``).
    """
    if other.id in profile.merged_from:
        return 0
    profile.merged_from.append(other.id)
    for source, offset in other.offsets.items():
        profile.offsets[source] = max(offset, profile.offsets.get(source, -1))
    # The union: a repeat sent under the visitor id and again after identify is caught.
    capped = 0
    if rules.dedupe_ids and other.seen_ids:
        capped = dedupe.merge(profile.seen_ids, other.seen_ids, rules.dedupe_days, rules.dedupe_ids)
    if other.events:
        first = profile.events == 0
        profile.first_seen = (
            other.first_seen if first else min(profile.first_seen, other.first_seen)
        )
        profile.last_seen = other.last_seen if first else max(profile.last_seen, other.last_seen)
    profile.events += other.events
    for name, n in other.counts.items():
        profile.counts[name] = profile.counts.get(name, 0) + n
    for name, n in other.channels.items():
        profile.channels[name] = profile.channels.get(name, 0) + n
    profile.orders += other.orders
    profile.revenue += other.revenue
    profile.first_order_at = _min_opt(profile.first_order_at, other.first_order_at)
    profile.last_order_at = _max_opt(profile.last_order_at, other.last_order_at)
    profile.refunds += other.refunds
    profile.refunded += other.refunded
    profile.sessions_closed += other.sessions_closed
    for start, end in other.spans:
        _insert_span(profile, start, end, rules)
    for product_id, line in other.cart.items():
        mine = profile.cart.setdefault(product_id, CartLine())
        if (line.price_at, line.price, line.category) > (mine.price_at, mine.price, mine.category):
            mine.category, mine.price, mine.price_at = line.category, line.price, line.price_at
        mine.changes.extend(line.changes)
    # Either side's newest order checks out the other side's older cart changes too.
    # (or its cap's horizon: the same trim as ``apply``, on the union)
    profile.cart_cleared_at = max(profile.cart_cleared_at, other.cart_cleared_at)
    _prune_cart(profile)
    limits.trim_cart(profile, rules.cart_lines_kept, dropped)
    for category, score in other.affinity.items():
        _add_affinity(profile, category, score, other.affinity_ref, rules, None, trim=False)
    # Trimmed once on the union: the strongest of both sides, whatever the dict order.
    limits.trim_affinity(profile, rules.affinity_kept, dropped)
    for product_id, t in other.viewed.items():
        _add_viewed(profile, product_id, t, rules)
    windows.merge(profile.buckets, other.buckets)
    windows.prune(profile.buckets, profile.last_seen)
    if other.send_hours or profile.send_hours:
        send_hours.merge(profile.send_hours, other.send_hours, profile.last_seen)
    if other.utc_offsets or profile.utc_offsets:
        send_hours.merge_offsets(profile.utc_offsets, other.utc_offsets, profile.last_seen)
    if other.custom_counts:
        custom.merge(
            profile,
            other,
            registered=rules.custom_schemas.names,
            kept=rules.custom_names_kept,
            dropped=dropped,
        )
    for purpose, (t, granted) in other.consent.items():
        _set_consent(profile, purpose, t, granted)
    profile.identified_at = _min_opt(profile.identified_at, other.identified_at)
    # Days either side labelled already are not labelled again for the merged customer.
    profile.churn_labelled_through = max(
        profile.churn_labelled_through, other.churn_labelled_through
    )
    if other.churn_refused is not None:  # its days before the refusal came with it
        profile.churn_refused = max(profile.churn_refused or 0, other.churn_refused)
    for anonymous_id in [other.id, *other.anonymous_ids]:
        if anonymous_id not in profile.anonymous_ids and anonymous_id != profile.id:
            profile.anonymous_ids.append(anonymous_id)
    if other.customer_id is not None:
        # A known customer (an admin merge): its identified activity is the survivor's now.
        for customer in [other.id, *other.merged_customers]:
            if customer not in profile.merged_customers and customer != profile.id:
                profile.merged_customers.append(customer)
        _merge_churn_days(profile, other, rules.churn_days_kept)
    for name, (t, value) in other.traits.items():
        _set_trait(profile, name, t, value)
    if not allows(profile, "analytics"):
        minimise(profile)
    return capped


# --- the parts -----------------------------------------------------------------------------


def _add_churn_day(profile: Profile, t: int, orders: int, revenue: float, kept: int) -> None:
    """Count identified activity per day; days no label can read any more are dropped."""
    day = (t // windows.DAY) * windows.DAY
    days = profile.churn_days
    cell = days.get(day)
    if cell is None:
        cell = days[day] = [0, 0, 0.0]
        # Only a new day can push old ones out of reach.
        oldest = max(days) - kept
        for start in [s for s in days if s < oldest]:
            del days[start]
    cell[0] += 1
    cell[1] += orders
    cell[2] += revenue
    first = profile.churn_first_seen
    if first is None or t < first:
        profile.churn_first_seen = t


def _keep_churn_days_before_refusal(profile: Profile) -> None:
    """Drop the churn days from the analytics refusal's day on; keep the ones before it
    (with ``churn_refused`` set) until the labeler has decided every label they decide
    by the refusal's time (``ChurnLabeler.decide``).

    The refusal may arrive before the customer's earlier events on other topics; the
    labels decided by its time must read those too, so the days before it stay until
    the watermark says nothing earlier is still on its way.
    """
    refused = profile.consent.get("analytics")
    cut = (refused[0] // windows.DAY) * windows.DAY if refused is not None else None
    if cut is not None and profile.churn_days:
        profile.churn_days = {d: cell for d, cell in profile.churn_days.items() if d < cut}
    else:
        profile.churn_days = {}
    if profile.churn_days:
        assert refused is not None
        profile.churn_refused = refused[0]
    else:
        profile.churn_first_seen = profile.churn_refused = None


def _merge_churn_days(profile: Profile, other: Profile, kept: int) -> None:
    """Add ``other``'s identified activity per day; days no label can read are dropped."""
    days = profile.churn_days
    for day, cell in other.churn_days.items():
        mine = days.setdefault(day, [0, 0, 0.0])
        for n, value in enumerate(cell):
            mine[n] += value
    if days:
        oldest = max(days) - kept
        for start in [s for s in days if s < oldest]:
            del days[start]
    profile.churn_first_seen = _min_opt(profile.churn_first_seen, other.churn_first_seen)


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _insert_span(profile: Profile, start: int, end: int, rules: Rules) -> None:
    """Union [start, end] into the session spans; spans closer than the gap join."""
    gap = rules.session_gap
    spans = profile.spans
    if spans:
        # The common case, events in order: the newest span grows (or already holds it).
        newest_start, newest_end = spans[-1]
        if newest_start <= start and end <= newest_end + gap:
            if end > newest_end:
                spans[-1] = (newest_start, end)
            return
    if spans and end < spans[0][0] - gap and len(spans) >= rules.spans_kept:
        # Older than every span we still keep: a session of its own (see README).
        profile.sessions_closed += 1
        return
    kept: list[tuple[int, int]] = []
    for s, e in spans:
        if s - gap <= end and start <= e + gap:
            start, end = min(start, s), max(end, e)
        else:
            kept.append((s, e))
    kept.append((start, end))
    kept.sort()
    overflow = len(kept) - rules.spans_kept
    if overflow > 0:
        profile.sessions_closed += overflow
        kept = kept[overflow:]
    profile.spans = kept


def _change_cart(
    profile: Profile, product_id: str, t: int, delta: int, rules: Rules, dropped: Dropped | None
) -> None:
    line = profile.cart[product_id]
    if t <= profile.cart_cleared_at:
        # Before the last order (or the cap's horizon): that cart was checked out. A
        # line left without changes shows nothing, and would pile up with late adds.
        if not line.changes:
            del profile.cart[product_id]
        if dropped is not None and t > (profile.last_order_at or -1):
            dropped[limits.counted(limits.CART_CHANGES)] += 1  # passed by the cap, not an order
        return
    line.changes.append((t, delta))
    if len(line.changes) > limits.CART_CHANGES_KEPT or len(profile.cart) > rules.cart_lines_kept:
        limits.trim_cart(profile, rules.cart_lines_kept, dropped)


def _clear_cart(profile: Profile, t: int) -> None:
    """An order at ``t`` checks out every cart change at or before ``t``."""
    if t > profile.cart_cleared_at:
        profile.cart_cleared_at = t
        _prune_cart(profile)


def _prune_cart(profile: Profile) -> None:
    """Drop cart changes at or before the last order, and lines left empty."""
    cleared = profile.cart_cleared_at
    for product_id in list(profile.cart):
        line = profile.cart[product_id]
        line.changes = [(ct, d) for ct, d in line.changes if ct > cleared]
        if not line.changes:
            del profile.cart[product_id]


def _add_affinity(
    profile: Profile,
    category: str,
    weight: float,
    t: int,
    rules: Rules,
    dropped: Dropped | None,
    trim: bool = True,
) -> None:
    """Add ``weight`` observed at ``t``; scores are kept decayed to ``affinity_ref``,
    for the ``affinity_kept`` strongest categories."""
    if not profile.affinity:
        profile.affinity_ref = t
    if t > profile.affinity_ref:
        factor = 0.5 ** ((t - profile.affinity_ref) / rules.affinity_half_life)
        for name in profile.affinity:
            profile.affinity[name] *= factor
        profile.affinity_ref = t
    decayed = weight * 0.5 ** ((profile.affinity_ref - t) / rules.affinity_half_life)
    profile.affinity[category] = profile.affinity.get(category, 0.0) + decayed
    if trim and len(profile.affinity) > rules.affinity_kept:
        limits.trim_affinity(profile, rules.affinity_kept, dropped)


def _add_viewed(profile: Profile, product_id: str, t: int, rules: Rules) -> None:
    """Keep the newest view time of the ``viewed_kept`` most recently viewed products."""
    viewed = profile.viewed
    if t > viewed.get(product_id, -1):
        viewed[product_id] = t
    if len(viewed) > rules.viewed_kept:
        oldest = min(viewed, key=lambda p: (viewed[p], p))
        del viewed[oldest]


def _set_consent(profile: Profile, purpose: str, t: int, granted: bool) -> None:
    """Last writer wins by event time; on a tie, a refusal wins (the safe side)."""
    current = profile.consent.get(purpose)
    if current is None or t > current[0] or (t == current[0] and not granted):
        profile.consent[purpose] = (t, granted)


def _set_trait(profile: Profile, name: str, t: int, value: TraitValue) -> None:
    """Last writer wins by event time; on a tie the larger value (by its text), so the
    result never depends on arrival order."""
    current = profile.traits.get(name)
    if current is None or (t, repr(value)) > (current[0], repr(current[1])):
        profile.traits[name] = (t, value)


def minimise(profile: Profile) -> None:
    """Keep only what honouring the customer's choices needs (analytics withheld).

    Kept: id, customer id, linked anonymous ids, consent, identification time, the
    pseudonymised traits, and the exactly-once bookkeeping (offsets, the dedupe window,
    merged profiles) without which a re-delivered event would be counted twice.
    """
    profile.first_seen = profile.last_seen = profile.events = 0
    profile.counts = {}
    profile.channels = {}
    profile.orders = 0
    profile.revenue = 0.0
    profile.first_order_at = profile.last_order_at = None
    profile.refunds = 0
    profile.refunded = 0.0
    profile.sessions_closed = 0
    profile.spans = []
    profile.cart_cleared_at = -1
    profile.cart = {}
    profile.affinity_ref = 0
    profile.affinity = {}
    profile.viewed = {}
    profile.send_hours = {}
    profile.utc_offsets = {}
    profile.buckets = {}
    profile.custom_counts = {}
    _keep_churn_days_before_refusal(profile)
    profile.churn_risk = None
    profile.churn_reasons = []
    profile.churn_version = 0
    profile.churn_degraded = []
    profile.activity = None
