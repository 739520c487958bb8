"""Finding trigger situations as events are applied: pure functions over the watch.

``observe`` sees each applied identified event (``custom_event`` those of a custom event
rule's name); ``scored`` sees the churn risk after a batch; ``entered`` takes segment
transitions. Each may add a ``Pending`` firing, decided
later in event time (``decide``). Cart timers are not pending yet: whether a cart was
abandoned is known only when the watermark passes its deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdpulse.contract.mirror import (
    CheckoutStartedEvent,
    CustomEvent,
    Event,
    OfferRedeemedEvent,
    OrderCompletedEvent,
    ProductAddedEvent,
    ProductRemovedEvent,
    ProductViewedEvent,
)
from cdpulse.profile import limits
from cdpulse.profile.limits import Dropped
from cdpulse.profile.rules import SESSION_TYPES
from cdpulse.profile.watch import CartTimer, Pending, Watch
from cdpulse.segments.compiler import Values
from cdpulse.triggers.rules import (
    CartAbandoned,
    ChurnRisk,
    CrossSell,
    CustomEventRule,
    HighIntent,
    R,
    TriggerConfig,
    WinBack,
)

ORDERS_KEPT = 32
REDEEMED_KEPT = 16
CARTS_KEPT = 4
# Distinct products one session's views are counted for (the simulated shop's most is
# 32): beyond it the product with the fewest views goes, the one farthest from the
# high-intent threshold; only a crawler-like session gets there.
SESSION_VIEWS_KEPT = 256


@dataclass(frozen=True, slots=True)
class Transition:
    """A customer entering (or leaving) a segment at an event time: the segment engine's output."""

    customer_id: str
    segment: str
    entered: bool
    at_ms: int


# (config id, kind) -> ``TriggerConfig.rule``'s answer. Asked ~1.4 times per applied
# event from here and ``decide``: a method of the pydantic config costs ~0.4 µs a call
# from compiled code, this lookup a tenth of it. ``TriggerConfig.rule`` keeps every
# config it answered for alive, so an id here is never another config's.
_RULES: dict[tuple[int, type], object] = {}


def rule_of(config: TriggerConfig, kind: type[R]) -> R | None:
    """``config.rule(kind)``, remembered."""
    key = (id(config), kind)
    if key in _RULES:
        return _RULES[key]  # type: ignore[return-value]
    found = _RULES[key] = config.rule(kind)
    return found


def observe(
    watch: Watch,
    event: Event,
    t: int,
    config: TriggerConfig,
    session_gap: int,
    dropped: Dropped | None = None,
) -> None:
    """Update ``watch`` with one applied event at event time ``t`` (epoch ms); entries
    the caps drop are counted in ``dropped``."""
    if event.type in SESSION_TYPES:
        _session(watch, event, t, config, session_gap, dropped)
    if isinstance(event, ProductAddedEvent):
        _add_to_cart(watch, event, t, config)
    elif isinstance(event, ProductRemovedEvent):
        _remove_from_cart(watch, event.properties.product_id, event.properties.quantity, t, config)
    elif isinstance(event, CheckoutStartedEvent):
        _close_carts(watch, t, config)
    elif isinstance(event, OrderCompletedEvent):
        watch.orders = sorted([*watch.orders, t])[-ORDERS_KEPT:]
        _close_carts(watch, t, config)
        rule = rule_of(config, CrossSell)
        if rule is not None:
            products = list(dict.fromkeys(i.product_id for i in event.properties.items))
            reason = f"completed order {event.properties.order_id} ({len(products)} products)"
            watch.pending.append(
                Pending(rule.name, event.properties.order_id, t, [reason], products)
            )
    elif isinstance(event, OfferRedeemedEvent):
        redeemed = [*watch.redeemed, (t, event.properties.offer_id)]
        watch.redeemed = sorted(redeemed)[-REDEEMED_KEPT:]


def custom_event(
    watch: Watch, event: CustomEvent, t: int, rule: CustomEventRule, values: Values
) -> None:
    """A custom event of ``rule``'s name at ``t``: a situation when ``rule.when`` holds
    for ``values`` (the profile's fields with the event applied, and ``event``: its
    properties). Keyed by the event id: one situation per event, and a redelivered event
    is a duplicate before it gets here."""
    condition = rule.condition
    if condition is not None and condition.decide(values) is not True:
        return  # false, or undecidable (a property it reads is absent): no situation
    reason = f"custom event {event.name}" + (f" where {rule.when}" if condition else "")
    products = event.properties.get("product_id")
    found = [products] if isinstance(products, str) else []
    watch.pending.append(Pending(rule.name, event.event_id, t, [reason], found))


def scored(
    watch: Watch,
    risk: float | None,
    reasons: list[str],
    at: int,
    key: str,
    config: TriggerConfig,
    degraded: list[str] | None = None,
    values: Callable[[], Values] | None = None,
) -> None:
    """Note the churn risk after a write; crossing the threshold upward is a situation.

    ``degraded``: why the model that computed ``risk`` was degraded (none: it was not).
    A rule gated by that model notes it on the situation (decided by its ``on_degraded``),
    and with a fallback, the condition over the profile's ``values`` decides instead of
    the score: the risk kept reads 1 while it holds, 0 while not, so its turning true is
    the crossing, and once the model recovers its score crosses again only from below.
    """
    if risk is None:
        return
    before = watch.risk
    watch.risk = risk
    rule = rule_of(config, ChurnRisk)
    if rule is None:
        return
    threshold = rule.threshold
    gated = bool(degraded) and rule.model_gated
    fallback = rule.condition if gated else None
    if fallback is not None:
        holds = values is not None and fallback.decide(values()) is True
        watch.risk = risk = 1.0 if holds else 0.0
    if risk < threshold or (before is not None and before >= threshold):
        return
    if fallback is not None:
        why = [f"churn model degraded; fallback {rule.fallback} holds"]
    else:
        why = [f"churn risk rose to {risk:.2f} (threshold {threshold:.2f})", *reasons]
    found = Pending(rule.name, key, at, why)
    if gated:
        found.degraded, found.fallback = list(degraded or ()), fallback is not None
    watch.pending.append(found)


def entered(watch: Watch, transition: Transition, config: TriggerConfig) -> None:
    """A segment transition; entering the win-back rule's segment is a situation."""
    rule = rule_of(config, WinBack)
    if rule is None or not transition.entered or rule.segment != transition.segment:
        return
    key = f"{transition.segment}@{transition.at_ms}"
    if any(p.rule == rule.name and p.key == key for p in watch.pending):
        return  # the same transition again (redelivered, or recovered after a crash)
    reason = f"entered segment {transition.segment!r}"
    watch.pending.append(Pending(rule.name, key, transition.at_ms, [reason]))


def cart_deadline(cart: CartTimer, config: TriggerConfig) -> int:
    rule = rule_of(config, CartAbandoned)
    return cart.last_add + (rule.after if rule is not None else 0)


# --- the parts -------------------------------------------------------------------------


def _session(
    watch: Watch, event: Event, t: int, config: TriggerConfig, gap: int, dropped: Dropped | None
) -> None:
    """Sessions as the profile counts them: a gap longer than ``gap`` starts a new one."""
    if not watch.session or t - watch.session_last > gap:
        watch.session, watch.views, watch.intent_fired = event.event_id, {}, False
    watch.session_last = max(watch.session_last, t)
    rule = rule_of(config, HighIntent)
    if rule is None or not isinstance(event, ProductViewedEvent):
        return
    product = event.properties.product_id
    views = watch.views
    seen = views[product] = views.get(product, 0) + 1
    if len(views) > SESSION_VIEWS_KEPT:
        del views[min(views, key=lambda p: (views[p], p))]
        if dropped is not None:
            dropped[limits.counted(limits.WATCH_VIEWS)] += 1
    if seen >= rule.views and not watch.intent_fired:
        watch.intent_fired = True
        reason = f"viewed {product} {seen} times in one session"
        watch.pending.append(Pending(rule.name, watch.session, t, [reason], [product]))


def _add_to_cart(watch: Watch, event: ProductAddedEvent, t: int, config: TriggerConfig) -> None:
    if rule_of(config, CartAbandoned) is None:
        return
    product, quantity = event.properties.product_id, event.properties.quantity
    current = watch.carts[-1] if watch.carts else None
    if (
        current is not None
        and not current.closed
        and not current.decided
        and t <= cart_deadline(current, config)
    ):
        current.items[product] = current.items.get(product, 0) + quantity
        current.last_add = max(current.last_add, t)
        return
    # A new situation; a cart left open (abandoned already) carries its items over.
    items = dict(current.items) if current is not None and not current.closed else {}
    items[product] = items.get(product, 0) + quantity
    watch.carts.append(CartTimer(event.event_id, t, t, items))
    # Decided timers are kept only as history; an undecided one is never dropped.
    last = len(watch.carts) - CARTS_KEPT
    watch.carts = [c for i, c in enumerate(watch.carts) if i >= last or not c.decided]


def _remove_from_cart(
    watch: Watch, product: str, quantity: int, t: int, config: TriggerConfig
) -> None:
    current = watch.carts[-1] if watch.carts else None
    if current is None or current.closed or t > cart_deadline(current, config):
        return
    left = current.items.get(product, 0) - quantity
    if left > 0:
        current.items[product] = left
    else:
        current.items.pop(product, None)


def _close_carts(watch: Watch, t: int, config: TriggerConfig) -> None:
    """A checkout or an order at ``t`` closes every cart whose window holds ``t``."""
    for cart in watch.carts:
        if cart.opened_at <= t <= cart_deadline(cart, config):
            cart.closed = True
