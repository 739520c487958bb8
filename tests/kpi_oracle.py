"""The ground truth of the live KPI counters, computed from raw events with a plain pass.

Written apart from the engine: nothing here comes from ``cdpulse.kpis`` or
``cdpulse.profile``. Identity (which events are one customer's) comes from the profile
oracle's own rules (``tests.oracle``). Then each customer's counted events are sorted by
time and every counter is read off its definition (README: Live KPIs):

- a *visit* is a clickstream event or an order; per UTC day a customer counts once among
  ``visitors`` (and ``customers`` when a visit carried ``customer_id``), ``viewers``,
  ``cart_adders``, ``checkout_starters``, ``buyers`` by what its visits did, in total and
  per channel; per ISO week the same; ``new_visitors`` on its first visit's day (week),
  ``repeat_buyers`` on order days after its first order's day;
- ``sessions``: runs of clickstream events no more than the session gap apart, on the
  first event's day;
- event counts, cents and the time between consecutive orders, on the event's day, in
  total, by channel and by the event's own campaign (``source/medium/name``);
- orders by first touch (the earliest campaign touch, if at or before the order) and
  last touch (the campaign of the newest campaign visit begun at or before it: a visit
  is one campaign's touches no more than the session gap apart), ``(none)`` without one;
- demand, of every order whatever the consent: the shop's orders and cents
  (``orders|d:shop``, ``revenue_cents|d:shop``), each order's line units and line cents
  (price x quantity) per category (``units|g:``, ``revenue_cents|g:``) and per product
  (``|p:``), on the order's day;
- newsletters: opens and clicks, and each customer once on its first open (click) day;
- cohorts: customers by the week of their first order; per following week, how many
  visited and how many ordered.

Consent: a customer's events count (but for the demand) while the consent known so far
(in processing order) allows analytics; a refusal ends what the customer is counted as
(a later grant starts afresh). Segment splits (``|s:``) depend on segment decisions and
are not computed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from tests.oracle import (
    SESSION_GAP,
    SESSION_TYPES,
    millis,
    newest_analytics,
    resolved,
    valid_events,
)

DAY = 86_400_000
CHANNELS = ("web", "app", "email", "store", "call_center", "partner")
VISITS = {*SESSION_TYPES, "order_completed"}
STEPS = {
    "product_viewed": "viewers",
    "product_added": "cart_adders",
    "checkout_started": "checkout_starters",
    "order_completed": "buyers",
}
COUNTED = {"product_viewed": "product_views", "product_added": "cart_adds"}
COUNTED["checkout_started"] = "checkouts"

Event = Mapping[str, Any]
Counters = dict[str, dict[str, int]]


def iso(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def monday(day: int) -> int:
    """The epoch day of the Monday of ``day``'s week (date.weekday: Monday is 0)."""
    return day - (date(1970, 1, 1) + timedelta(days=day)).weekday()


def campaign(event: Event) -> str | None:
    found = (event.get("context") or {}).get("campaign")
    if not found or all(found.get(k) is None for k in ("source", "medium", "name")):
        return None
    return "/".join(found.get(k) or "" for k in ("source", "medium", "name"))[:128]


def cents(amount: float) -> int:
    return round(amount * 100)


class _Out:
    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, period: str, day: int, name: str, amount: int = 1) -> None:
        self.counters[f"{period}:{iso(day)}"][name] += amount

    def each(self, period: str, day: int, metric: str, channels: Iterable[str]) -> None:
        """``metric`` once in total and once per channel (nothing without a channel)."""
        channels = set(channels)
        if not channels:
            return
        self.add(period, day, metric)
        for channel in sorted(set(channels)):
            self.add(period, day, f"{metric}|c:{channel}")

    def done(self) -> Counters:
        return {
            period: {k: v for k, v in sorted(fields.items()) if v}
            for period, fields in sorted(self.counters.items())
            if any(fields.values())
        }


def expected(items: Iterable[bytes | Event], *, now: datetime) -> Counters:
    """The counters of a stream given in processing order (raw values or event dicts)."""
    every = valid_events(items, now=now)
    if any(e["type"] == "erasure_requested" for e in every):
        raise ValueError("kpi oracle: erasure keeps what was counted; not modelled here")
    owned = resolved(every)[3]
    out = _Out()
    for mine in owned.values():
        _demand(mine, out)
        for person in counted_spells(mine):
            _person(person, out)
    return out.done()


def _demand(events: list[Event], out: _Out) -> None:
    """Every order of a customer in the demand, whatever its consent: the shop's orders
    and revenue, and the line units and cents by category and product."""
    for e in events:
        if e["type"] != "order_completed":
            continue
        day, props = millis(e["timestamp"]) // DAY, e["properties"]
        out.add("day", day, "orders|d:shop")
        out.add("day", day, "revenue_cents|d:shop", cents(props["revenue"]))
        for item in props["items"]:
            quantity = item.get("quantity", 1)
            for code, name in (("g", item["category"]), ("p", item["product_id"])):
                out.add("day", day, f"units|{code}:{name[:128]}", quantity)
                line = cents(item["price"]) * quantity
                out.add("day", day, f"revenue_cents|{code}:{name[:128]}", line)


def counted_spells(events: list[Event]) -> list[list[Event]]:
    """A customer's counted events (in processing order), cut where a refusal of
    analytics ended what it was counted as: each part counts as a customer of its own."""
    analytics: tuple[int, bool] | None = None
    spells: list[list[Event]] = [[]]
    for event in events:
        analytics = newest_analytics(event, analytics)
        if analytics is not None and not analytics[1]:
            if spells[-1]:
                spells.append([])
            continue
        spells[-1].append(event)
    return [s for s in spells if s]


def _person(events: list[Event], out: _Out) -> None:
    timed = sorted(((millis(e["timestamp"]), n, e) for n, e in enumerate(events)))
    # --- the days and weeks: what the customer did, through which channels
    did: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for t, _, e in timed:
        if e["type"] not in VISITS:
            continue
        day, channel = t // DAY, e["channel"]
        did[day]["visitors"].add(channel)
        if e.get("customer_id") is not None:
            did[day]["customers"].add(channel)
        if e["type"] in STEPS:
            did[day][STEPS[e["type"]]].add(channel)
    order_days = sorted(d for d in did if did[d]["buyers"])
    first_visit = min(did, default=None)
    first_order = order_days[0] if order_days else None
    weeks: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for day, metrics in did.items():
        for metric, channels in metrics.items():
            out.each("day", day, metric, channels)
            weeks[monday(day)][metric] |= channels
        if day == first_visit:
            out.each("day", day, "new_visitors", metrics["visitors"])
        if first_order is not None and day > first_order and metrics["buyers"]:
            out.each("day", day, "repeat_buyers", metrics["buyers"])
    for week, metrics in weeks.items():
        for metric, channels in metrics.items():
            if channels:
                out.each("week", week, metric, channels)
        if first_visit is not None and monday(first_visit) == week:
            out.each("week", week, "new_visitors", metrics["visitors"])
        repeat = set().union(
            *(did[d]["buyers"] for d in order_days if monday(d) == week and d > first_order)
        )
        if repeat:
            out.each("week", week, "repeat_buyers", repeat)
    if first_order is not None:
        start = monday(first_order)
        out.add("cohort", start, "customers")
        for week, metrics in weeks.items():
            if week >= start:
                k = (week - start) // 7
                if metrics["visitors"]:
                    out.add("cohort", start, f"active:{k}")
                if metrics["buyers"]:
                    out.add("cohort", start, f"ordering:{k}")
    # --- sessions
    clicks = [t for t, _, e in timed if e["type"] in SESSION_TYPES]
    for n, t in enumerate(clicks):
        if n == 0 or t - clicks[n - 1] > SESSION_GAP:
            out.add("day", t // DAY, "sessions")
    # --- event counts, money, orders
    touches = [(t, label) for t, _, e in timed if (label := campaign(e)) is not None]
    visits = _visits(touches)
    previous_order: int | None = None
    for t, _, e in timed:
        day, kind, props = t // DAY, e["type"], e.get("properties", {})
        label = campaign(e)

        def additive(
            metric: str, amount: int, day: int = day, e: Event = e, label: Any = label
        ) -> None:
            out.add("day", day, metric, amount)
            out.add("day", day, f"{metric}|c:{e['channel']}", amount)
            if label is not None:
                out.add("day", day, f"{metric}|k:{label}", amount)

        if kind in COUNTED:
            additive(COUNTED[kind], 1)
        if kind == "product_viewed":
            if props.get("recommendation_id") is not None:
                out.add("day", day, "reco_views")
            if props.get("offer_id") is not None:
                out.add("day", day, "offer_views")
                out.add("day", day, f"offer_views|o:{props['offer_id']}")
        elif kind == "order_completed":
            amount = cents(props["revenue"])
            additive("orders", 1)
            additive("revenue_cents", amount)
            if previous_order is not None:
                out.add("day", day, "order_gaps")
                out.add("day", day, "order_gap_ms", t - previous_order)
            previous_order = t
            before = [(at, name) for at, name in visits if at <= t]
            first = min(touches)[1] if touches and min(touches)[0] <= t else "(none)"
            last = max(before)[1] if before else "(none)"
            for dimension, name in (("f", first), ("l", last)):
                out.add("day", day, f"orders|{dimension}:{name}")
                out.add("day", day, f"revenue_cents|{dimension}:{name}", amount)
            if props.get("recommendation_id") is not None:
                out.add("day", day, "reco_orders")
                out.add("day", day, "reco_revenue_cents", amount)
            if props.get("offer_id") is not None:
                for metric, n in (("offer_orders", 1), ("offer_revenue_cents", amount)):
                    out.add("day", day, metric, n)
                    out.add("day", day, f"{metric}|o:{props['offer_id']}", n)
        elif kind == "order_refunded":
            additive("refunds", 1)
            additive("refunded_cents", cents(props["amount"]))
        elif kind in ("offer_shown", "offer_redeemed"):
            metric = "offers_shown" if kind == "offer_shown" else "offers_redeemed"
            out.add("day", day, metric)
            out.add("day", day, f"{metric}|o:{props['offer_id']}")
    # --- newsletters
    for kind, metric, unique in (
        ("email_opened", "email_opens", "email_openers"),
        ("email_clicked", "email_clicks", "email_clickers"),
    ):
        first_day: dict[str, int] = {}
        for t, _, e in timed:
            if e["type"] != kind:
                continue
            newsletter = e["properties"]["campaign_id"]
            out.add("day", t // DAY, metric)
            out.add("day", t // DAY, f"{metric}|e:{newsletter}")
            first_day.setdefault(newsletter, t // DAY)
        for newsletter, day in first_day.items():
            out.add("day", day, unique)
            out.add("day", day, f"{unique}|e:{newsletter}")


def _visits(touches: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(start, campaign) of each campaign visit: one campaign's touches no more than the
    session gap apart."""
    times: dict[str, list[int]] = defaultdict(list)
    for t, name in touches:
        times[name].append(t)
    starts = []
    for name, mine in times.items():
        mine.sort()
        for n, t in enumerate(mine):
            if n == 0 or t - mine[n - 1] > SESSION_GAP:
                starts.append((t, name))
    return starts


def without_segments(counters: Counters) -> Counters:
    """``counters`` without the segment splits (which the oracle does not compute)."""
    out = {}
    for period, fields in counters.items():
        kept = {k: v for k, v in fields.items() if "|s:" not in k and v}
        if kept:
            out[period] = dict(sorted(kept.items()))
    return dict(sorted(out.items()))


def differences(actual: Counters, wanted: Counters, limit: int = 20) -> list[str]:
    """What differs, field by field (at most ``limit`` lines)."""
    problems = []
    for period in sorted(set(actual) | set(wanted)):
        mine, theirs = actual.get(period, {}), wanted.get(period, {})
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name, 0) != theirs.get(name, 0):
                problems.append(
                    f"{period} {name}: engine {mine.get(name, 0)}, oracle {theirs.get(name, 0)}"
                )
    return problems[:limit] + (
        [f"... {len(problems) - limit} more"] if len(problems) > limit else []
    )
