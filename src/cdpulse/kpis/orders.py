"""Orders: time between them, and the campaign touches they are attributed to.

Time between orders: each order after a customer's first counts the time since the one
before it, on its own day (``order_gaps`` orders, ``order_gap_ms`` their sum). A late
order between two others splits that gap: the later one's shrinks, the late one gets
the rest.

Attribution: a *touch* is an event that carries a ``context.campaign``; the touches of
one campaign no more than the session gap apart are one *campaign visit*. An order
counts for the customer's *first touch* (the earliest touch, if it came at or before the
order) and for its *last touch* (the campaign of the newest visit that began at or
before the order), ``(none)`` without one. Both are functions of the set of touches: a
touch that arrives after orders it precedes moves them to it, so the counts do not
depend on arrival order.

>>> from cdpulse.profile.activity import Activity
>>> a, tally, gap = Activity(), Tally(), 1_800_000
>>> order(a, 1_000, 2_500, tally)                    # no touch yet: (none)
>>> touch(a, 500, "news/email/spring", gap, tally)   # ... arrived late: the order moves to it
>>> tally.counters(set())["day:1970-01-01"]["orders|l:news/email/spring"]
1
>>> tally.counters(set())["day:1970-01-01"].get("orders|l:(none)", 0)
0
"""

from __future__ import annotations

import bisect

from cdpulse.kpis.fields import (
    DAY,
    DAY_MS,
    FIRST_TOUCH,
    LAST_TOUCH,
    NO_CAMPAIGN,
    ORDER_GAP_MS,
    ORDER_GAPS,
    ORDERS,
    REVENUE,
    field,
)
from cdpulse.kpis.tally import Tally
from cdpulse.profile.activity import ORDERS_KEPT, TOUCHES_KEPT, Activity

Order = tuple[int, int]  # (time, cents)
Visit = tuple[int, int, str]  # (first touch, last touch, campaign)


def first_touch(activity: Activity, t: int) -> str:
    found = activity.first_touch
    return found[1] if found is not None and found[0] <= t else NO_CAMPAIGN


def last_touch(activity: Activity, t: int) -> str:
    """The campaign of the newest visit that began at or before ``t`` (two beginning at
    once: the greater name, so the answer does not depend on arrival order)."""
    visits = activity.touches
    at = bisect.bisect_right(visits, (t, INF, ""))
    if not at:
        return NO_CAMPAIGN
    start = visits[at - 1][0]
    return max(name for first, _, name in visits[:at] if first == start)


INF = 2**63


def _attribute(tally: Tally, t: int, amount: int, first: str, last: str, sign: int) -> None:
    day = t // DAY_MS
    tally.add(DAY, day, field(ORDERS, FIRST_TOUCH, first), sign, False)
    tally.add(DAY, day, field(REVENUE, FIRST_TOUCH, first), sign * amount, False)
    tally.add(DAY, day, field(ORDERS, LAST_TOUCH, last), sign, False)
    tally.add(DAY, day, field(REVENUE, LAST_TOUCH, last), sign * amount, False)


def order(activity: Activity, t: int, amount: int, tally: Tally) -> None:
    """An order at ``t`` of ``amount`` cents: its gap to the one before, the gap of the
    one after it (a late order), and its attribution."""
    orders = activity.orders
    at = bisect.bisect_left(orders, (t, amount))
    before = orders[at - 1][0] if at else None
    after = orders[at][0] if at < len(orders) else None
    if before is None and activity.orders_dropped:
        after = None  # the order before it fell off: its gap is not known, leave it be
    if before is not None:
        _gap(tally, t, t - before, 1)
    if after is not None:
        if before is not None:
            _gap(tally, after, before - t, 0)  # the gap shrinks: t is in between now
        else:
            _gap(tally, after, after - t, 1)  # the first order has one before it now
    orders.insert(at, (t, amount))
    if len(orders) > ORDERS_KEPT:
        del orders[0]
        activity.orders_dropped = True
    _attribute(tally, t, amount, first_touch(activity, t), last_touch(activity, t), 1)


def _gap(tally: Tally, t: int, ms: int, count: int) -> None:
    day = t // DAY_MS
    if count:
        tally.add(DAY, day, ORDER_GAPS, count)
    tally.add(DAY, day, ORDER_GAP_MS, ms)


def touch(activity: Activity, t: int, campaign: str, gap: int, tally: Tally) -> None:
    """A touch of ``campaign`` at ``t``: it joins that campaign's visits within ``gap``;
    the orders after it whose first or last touch it changes move."""
    visits = activity.touches
    joined = [v for v in visits if v[2] == campaign and v[0] - gap <= t <= v[1] + gap]
    if len(joined) == 1 and joined[0][0] <= t:
        first, last, _ = joined[0]
        if t > last:  # the visit goes on: no visit begins anew, nothing moves
            visits[visits.index(joined[0])] = (first, t, campaign)
        return
    since = min([t] + [v[0] for v in joined])
    orders = activity.orders[bisect.bisect_left(activity.orders, (since, -1)) :]
    was = [(first_touch(activity, o), last_touch(activity, o)) for o, _ in orders]
    for visit in joined:
        visits.remove(visit)
    merged = (since, max([t] + [v[1] for v in joined]), campaign)
    bisect.insort(visits, merged)
    seen = activity.first_touch
    if seen is None or (t, campaign) < seen:
        activity.first_touch = (t, campaign)
    _move(activity, orders, was, tally)
    if len(visits) > TOUCHES_KEPT:
        # Orders after the oldest visit move to what is still known before them.
        later = activity.orders[bisect.bisect_left(activity.orders, (visits[0][0], -1)) :]
        gone = [(first_touch(activity, o), last_touch(activity, o)) for o, _ in later]
        del visits[0]
        _move(activity, later, gone, tally)


def join(a: list[Visit], b: list[Visit], gap: int) -> list[Visit]:
    """The visits of both, those of one campaign no more than ``gap`` apart joined."""
    out: list[Visit] = []
    latest: dict[str, int] = {}  # campaign -> its visit in ``out`` that ends last
    for first, last, name in sorted([*a, *b]):
        at = latest.get(name)
        if at is not None and first <= out[at][1] + gap:
            if last > out[at][1]:
                out[at] = (out[at][0], last, name)
        else:
            latest[name] = len(out)
            out.append((first, last, name))
    return out


def _move(
    activity: Activity, orders: list[Order], was: list[tuple[str, str]], tally: Tally
) -> None:
    for (t, amount), (first, last) in zip(orders, was, strict=True):
        now_first, now_last = first_touch(activity, t), last_touch(activity, t)
        if (now_first, now_last) != (first, last):
            _attribute(tally, t, amount, first, last, -1)
            _attribute(tally, t, amount, now_first, now_last, 1)


def merge(into: Activity, other: Activity, gap: int, tally: Tally) -> None:
    """Join ``other``'s orders and campaign visits into ``into``'s: every order's gap and
    attribution as one customer's (the corrections are not split by segment)."""
    both = sorted([*into.orders, *other.orders])
    for part in (into, other):
        _all(part, part.orders, -1, tally)
    into.orders = both
    into.orders_dropped = into.orders_dropped or other.orders_dropped
    if other.first_touch is not None and (
        into.first_touch is None or other.first_touch < into.first_touch
    ):
        into.first_touch = other.first_touch
    into.touches = join(into.touches, other.touches, gap)[-TOUCHES_KEPT:]
    _all(into, both, 1, tally)
    if len(both) > ORDERS_KEPT:
        del both[: len(both) - ORDERS_KEPT]
        into.orders_dropped = True


def _all(activity: Activity, orders: list[Order], sign: int, tally: Tally) -> None:
    """``sign`` times the gaps and attributions of ``orders`` (one customer's, in time
    order); the first one's gap is not known when older ones fell off."""
    previous = None
    for t, amount in orders:
        if previous is not None:
            _gap_all(tally, t, t - previous, sign)
        previous = t
        _attribute(tally, t, amount, first_touch(activity, t), last_touch(activity, t), sign)


def _gap_all(tally: Tally, t: int, ms: int, sign: int) -> None:
    day = t // DAY_MS
    tally.add(DAY, day, ORDER_GAPS, sign, False)
    tally.add(DAY, day, ORDER_GAP_MS, sign * ms, False)
