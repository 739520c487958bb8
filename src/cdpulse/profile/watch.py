"""What a customer's profile remembers for its trigger rules: timers, sessions, pending firings.

The watch lives inside the profile, so it is saved in the same compare-and-set as the
events that changed it: an event re-delivered after a crash is a duplicate for the
profile and for its triggers alike, and a firing decided once is never decided again.

Only identified activity (events that carry ``customer_id``) is watched: a trigger
addresses a customer, and a visitor merged in later must not change what was decided.
"""

from __future__ import annotations

import msgspec


class CartTimer(msgspec.Struct, omit_defaults=True):
    """One cart situation: opened by an add, abandoned if no checkout before its deadline."""

    opened_by: str  # event id of the opening add: the situation's key
    opened_at: int
    last_add: int  # the deadline is the last add plus the rule's wait
    # product -> quantity. Not capped yet: grows with the distinct products added within
    # one cart situation (before its deadline); the profile cart above is capped
    items: dict[str, int] = msgspec.field(default_factory=dict)
    closed: bool = False  # a checkout or an order came before the deadline
    decided: bool = False


class Pending(msgspec.Struct, omit_defaults=True):
    """A situation found, waiting for the watermark to pass ``at`` before it is decided.

    Deciding in event time means consent and caps are read with every event up to ``at``
    applied, whatever lag the other topics had: a replay decides the same way.
    """

    rule: str
    key: str  # the situation: cart-opening event id, session id, order id, ...
    at: int
    reasons: list[str] = msgspec.field(default_factory=list)
    products: list[str] = msgspec.field(default_factory=list)
    # a churn crossing scored by a degraded model: the model's reasons (models/health.py),
    # and whether the rule's fallback condition made it instead of the score
    degraded: list[str] = msgspec.field(default_factory=list)
    fallback: bool = False


class Exposure(msgspec.Struct, omit_defaults=True):
    """A firing (or its holdout twin) waiting for its attribution window to close."""

    rule: str
    trigger_id: str
    at: int
    until: int
    holdout: bool = False
    offer: str = ""
    propensity: float = 1.0
    features: dict[str, float] = msgspec.field(default_factory=dict)


class Watch(msgspec.Struct, omit_defaults=True):
    """Per-customer trigger state, part of the profile."""

    session: str = ""  # event id that opened the current session
    session_last: int = -1
    # this session's views per product: emptied by a new session, at most
    # situations.SESSION_VIEWS_KEPT products (counted in watch_views when dropped)
    views: dict[str, int] = msgspec.field(default_factory=dict)
    intent_fired: bool = False
    # the CARTS_KEPT newest decided timers, and the undecided ones: a new timer opens only
    # once the last is closed or past its deadline, so those wait for the watermark only
    carts: list[CartTimer] = msgspec.field(default_factory=list)
    # the newest situations.ORDERS_KEPT order times, and REDEEMED_KEPT (time, offer)
    orders: list[int] = msgspec.field(default_factory=list)
    redeemed: list[tuple[int, str]] = msgspec.field(default_factory=list)
    risk: float | None = None  # churn risk after the last scored write
    # decided (and emptied) once the watermark passes ``at``: an event-time window
    pending: list[Pending] = msgspec.field(default_factory=list)
    # (rule, at) within the longest cap or cooldown memory (caps.forget), and the caps
    # bound how many firings fit in it
    fired: list[tuple[str, int]] = msgspec.field(default_factory=list)
    # firings within their attribution window (dropped once the watermark passes until)
    exposures: list[Exposure] = msgspec.field(default_factory=list)
    # (rule, at, reason): the newest situations a broken model input suppressed
    # (triggers/decide.py GATED_KEPT), for the trigger views
    gated: list[tuple[str, int, str]] = msgspec.field(default_factory=list)
    # (rule, at, action, reason): the newest situations of a score from a degraded model
    # (suppressed, held or fallback: triggers/decide.py GATED_KEPT), for the trigger views
    model_gated: list[tuple[str, int, str, str]] = msgspec.field(default_factory=list)
