"""What a customer's profile remembers for the live KPIs: the days it was active, its orders,
its campaign touches and the newsletters it opened.

The state lives inside the profile, so it is saved in the same compare-and-set as the
events that changed it: the KPI counters a save adds (``cdpulse.kpis``) are written only
if that save is, and an event re-delivered after a crash is a duplicate for the profile
and for the KPIs alike. Distinct counts (a customer once per day, per week, per cohort
cell) are decided from it, not from a sketch: exact.

Every part is a summary of a *set* of events, like the rest of the profile: flags OR,
first times take the minimum, orders are a sorted list. Two states therefore merge
exactly (``cdpulse.kpis.fold``), and a late event lands where it belongs.

Bounds (each the newest entries, so what a late event needs is there in practice): the
active days (``DAYS_KEPT``), the orders (``ORDERS_KEPT``), the campaign visits
(``TOUCHES_KEPT``) and the newsletters opened (``EMAILS_KEPT``). What falls off stays
counted; an event older than everything kept is counted in the additive KPIs but can no
longer move a distinct one (README: Live KPIs).
"""

from __future__ import annotations

import msgspec

DAYS_KEPT = 800  # over two years of daily activity, ~5 bytes a day
ORDERS_KEPT = 64
TOUCHES_KEPT = 16
EMAILS_KEPT = 32


class Activity(msgspec.Struct, omit_defaults=True, gc=False):
    """The KPI state of one profile (``Profile.activity``); times in epoch milliseconds,
    days in epoch days (UTC)."""

    # epoch day -> flags (``cdpulse.kpis.fields``: what the customer did that day, in
    # total and per channel), for the DAYS_KEPT newest active days
    days: dict[int, int] = msgspec.field(default_factory=dict)
    first_visit: int = -1  # epoch day of the first visit ever (-1: none), beyond the cap
    first_order: int = -1  # epoch day of the first order ever (-1: none): the cohort
    # (time, revenue in cents) of the ORDERS_KEPT newest orders, oldest first
    orders: list[tuple[int, int]] = msgspec.field(default_factory=list)
    orders_dropped: bool = False  # an older order fell off: the list is not all of them
    # the earliest campaign touch ever: (time, campaign)
    first_touch: tuple[int, str] | None = None
    # campaign visits: (first touch, last touch, campaign), touches of one campaign no
    # more than the session gap apart; the TOUCHES_KEPT newest, oldest first
    touches: list[tuple[int, int, str]] = msgspec.field(default_factory=list)
    # newsletter campaign -> (first open, first click), -1 when none, EMAILS_KEPT newest
    emails: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
