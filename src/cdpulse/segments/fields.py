"""The fields a segment expression can read: one flat record per customer profile.

Fields are read at the customer's own newest event time (``last_seen``), never at the
wall clock or the global watermark: the same events then give the same fields, the
same memberships and the same transitions on a replay, whatever the other partitions
did meanwhile. A value that is unknown (no churn model yet, no order yet, no RFM
scores yet) is left out, so an expression reading it fails and the customer is not a
member: absence is never mistaken for zero.

>>> from cdpulse.profile.model import Profile
>>> from cdpulse.profile.rules import Rules
>>> p = Profile(id="C-1", customer_id="C-1", last_seen=86_400_000, events=3, orders=1,
...             revenue=120.0, last_order_at=0, affinity={"shoes": 2.0, "bags": 1.0})
>>> f = profile_fields(p, Rules())
>>> f["orders"], f["revenue"], f["recency_days"], f["top_categories"], "churn_risk" in f
(1, 120.0, 1.0, ['shoes', 'bags'], False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.campaign.scoring import propensity
from cdpulse.models.clv.lifetime import ClvSnapshot, clv_view
from cdpulse.models.next_purchase import next_purchase
from cdpulse.models.personas_learner import PersonaState, persona_of
from cdpulse.models.send_time import best_window, send_window
from cdpulse.privacy.consent import PURPOSES, allows
from cdpulse.profile import custom, windows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.windows import DAY, WINDOWS, Window
from cdpulse.segments.compiler import ERROR, Values, modelled

TOP_CATEGORIES = 3
# Segments read lifetime value over a fixed horizon, whatever CDPULSE_CLV_HORIZON_DAYS
# says for the profile document: a condition's field names must not move with a setting.
CLV_HORIZON_DAYS = 90
CLV_FIELDS = (
    "p_alive",
    f"expected_purchases_{CLV_HORIZON_DAYS}d",
    f"expected_value_{CLV_HORIZON_DAYS}d",
)
MEASURES = ("events", "orders", "revenue")

# Name -> what it means; the README table and the start-up check of names read this.
FIELDS: dict[str, str] = {
    "customer_id": "the customer's id (string)",
    "events": "events applied to the profile",
    "sessions": "visits (30-minute inactivity gap, event time)",
    "orders": "completed orders",
    "revenue": "gross revenue of all orders",
    "net_revenue": "revenue minus refunds",
    "average_order_value": "revenue / orders (0.0 without orders)",
    "refunds": "refunds issued",
    "recency_days": "days from the last order to the last event (absent without orders)",
    "days_since_first_seen": "days from the first to the last event",
    "cart_value": "value of the open cart",
    "cart_items": "distinct products in the open cart",
    "top_categories": f"the {TOP_CATEGORIES} categories of highest decayed affinity (list)",
    "category_affinity": "category -> decayed affinity (map)",
    "counts": "event type -> events (map)",
    "channels": "channel -> events (map)",
    "consent": "purpose -> granted (map; a purpose never set is absent)",
    "churn_risk": "churn probability at the last event (absent before a churn model exists)",
    "rfm": "map r, f, m (1-5), score ('545') and segment (absent before the first sketch)",
    "clv": f"map {', '.join(CLV_FIELDS)} (absent without orders or a lifetime-value fit)",
    "propensity": "map email, offer: the campaign-response probability of an exposure of "
    "that kind (absent before a campaign model exists)",
    "persona": "the id of the customer's persona (GET /v1/personas; absent without "
    "personalization consent, before personas exist, or without an identified order in "
    "the last 60 days kept)",
    "next_order_in_days": "days from the last event to the expected next order; negative: "
    "overdue (absent with one order and no lifetime-value fit, or none)",
    "best_send_hour": "the hour of the day (0-23, the customer's time) of their send "
    "window (absent with too little activity: models/send_time.py)",
    "traits": "allow-listed identify traits, name -> value (map; personal ones as "
    "pseudonyms; a trait never sent is absent)",
    "custom": "custom event name -> events, and <name>_1h, _24h, _7d, _30d in each window "
    "(map; a name the profile does not count is absent, a registered one never is)",
    **{
        f"{measure}_{window.name}": f"{measure} in the last {window.name} before the last event"
        for window in WINDOWS
        for measure in MEASURES
    },
}


def profile_fields(
    profile: Profile,
    rules: Rules,
    rfm: dict[str, Any] | None = None,
    clv: ClvSnapshot | None = None,
    campaign: CampaignSnapshot | None = None,
    personas: PersonaState | None = None,
) -> ProfileRecord:
    """The record a segment expression is evaluated on, at ``profile.last_seen``."""
    values = FieldValues(profile, rules, rfm, clv, campaign, personas)
    if rfm is not None and not modelled(rfm):
        values.modelled = False  # the caller's map holds what only the engine may read
    return ProfileRecord(values)


class FieldValues(Values):
    """The fields of one profile at its ``last_seen``, each computed on its first read.

    ``values[name]`` is the field's value, or ``ERROR`` (``segments.compiler``) when the
    profile has none (absent: no churn model yet, no order, no RFM scores) or ``name``
    is no field: reading never raises, which is how compiled conditions read. Groups
    sharing work (one window's three measures, the cart's two, the affinity's two) are
    computed together, with the functions ``profile.view.render`` uses or its arithmetic
    step for step; a unit test holds every field equal to ``document_fields(render())``.
    Values are fresh objects except ``rfm``, the caller's map: read them, never mutate.
    """

    __slots__ = ("campaign", "clv", "personas", "profile", "rfm", "rules")

    def __init__(
        self,
        profile: Profile,
        rules: Rules,
        rfm: dict[str, Any] | None,
        clv: ClvSnapshot | None = None,
        campaign: CampaignSnapshot | None = None,
        personas: PersonaState | None = None,
    ) -> None:
        # Built empty: the base's copy-and-check of a record has nothing to do here.
        # Profiles hold bools, small ints, floats, validated text and str-keyed maps;
        # ``rfm`` is trusted here and checked by ``profile_fields``.
        self.modelled = True
        self.profile = profile
        self.rules = rules
        self.rfm = rfm
        self.clv = clv  # the newest lifetime-value fit, None before one
        self.campaign = campaign  # the newest campaign-response model, None before one
        self.personas = personas  # the newest personas, None before any

    def __missing__(self, name: str) -> Any:
        load = _LOADERS.get(name)
        value = ERROR if load is None else load(self)
        self[name] = value
        return value


class ProfileRecord(Mapping[str, Any]):
    """``document_fields(render(profile, last_seen))`` as a mapping, computed lazily.

    A view of ``FieldValues`` without its ``ERROR`` entries: an absent field is not in
    the mapping. ``membership.evaluate`` reads ``field_values`` directly.
    """

    def __init__(self, values: FieldValues) -> None:
        self.field_values = values

    def __getitem__(self, name: str) -> Any:
        value = self.field_values[name] if name in FIELDS else ERROR
        if value is ERROR:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in FIELDS if self.field_values[name] is not ERROR])

    def __len__(self) -> int:
        return sum(1 for _ in self)


Loader = Callable[[FieldValues], Any]


def _customer_id(values: FieldValues) -> Any:
    return values.profile.customer_id or values.profile.id


def _sessions(values: FieldValues) -> Any:
    return values.profile.sessions_closed + len(values.profile.spans)


def _revenue(values: FieldValues) -> Any:
    return float(rounded(values.profile.revenue, 2))


def _net_revenue(values: FieldValues) -> Any:
    p = values.profile
    return float(rounded(p.revenue - p.refunded, 2))


def _average_order_value(values: FieldValues) -> Any:
    p = values.profile
    return float(rounded(p.revenue / p.orders, 2)) if p.orders else 0.0


def _consent(values: FieldValues) -> Any:
    consent = values.profile.consent
    out = {}
    for purpose in PURPOSES:
        entry = consent.get(purpose)
        if entry is not None:
            out[purpose] = entry[1]
    return out


def _days_since_first_seen(values: FieldValues) -> Any:
    p = values.profile
    # A profile minimised by withheld analytics consent keeps no times.
    return rounded((p.last_seen - p.first_seen) / DAY, 4) if p.events else ERROR


def _recency_days(values: FieldValues) -> Any:
    p = values.profile
    if p.last_order_at is None:
        return ERROR
    return float(rounded((p.last_seen - p.last_order_at) / DAY, 4))


def _churn_risk(values: FieldValues) -> Any:
    risk = values.profile.churn_risk
    return ERROR if risk is None else float(risk)


def _propensity(values: FieldValues) -> Any:
    p = values.profile
    out = {}
    for kind, offer in (("email", False), ("offer", True)):
        scored = propensity(p, values.campaign, offer, p.last_seen)
        if scored is None or scored["propensity"] is None:
            return ERROR  # no personalization consent, or no model yet
        out[kind] = scored["propensity"]
    return out


def _persona(values: FieldValues) -> Any:
    found = persona_of(values.profile, values.personas)
    return ERROR if found is None else found["id"]  # no consent, personas or order


def _rfm(values: FieldValues) -> Any:
    return ERROR if values.rfm is None else values.rfm


def _clv(values: FieldValues) -> Any:
    p = values.profile
    if values.clv is None or not p.orders or not allows(p, "personalization"):
        return ERROR
    view = clv_view(p, values.clv, p.last_seen, CLV_HORIZON_DAYS)
    return ERROR if view["p_alive"] is None else {name: view[name] for name in CLV_FIELDS}


def _next_order_in_days(values: FieldValues) -> Any:
    p = values.profile
    if not allows(p, "personalization"):
        return ERROR  # no model output without it, as on the profile document
    params = values.clv.model.purchases if values.clv is not None else None
    found = next_purchase(p, params, p.last_seen)
    return ERROR if found is None else found.in_days


def _best_send_hour(values: FieldValues) -> Any:
    if not allows(values.profile, "personalization"):
        return ERROR
    window = send_window(values.profile, values.profile.last_seen)
    return ERROR if window is None else window.hour


def _traits(values: FieldValues) -> Any:
    return {name: value for name, (_, value) in values.profile.traits.items()}


def _custom(values: FieldValues) -> Any:
    p = values.profile
    return custom_fields(custom.view(p, p.last_seen, values.rules.custom_schemas.names))


def custom_fields(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """The ``custom`` map of a rendered profile's ``custom_counts``: ``<name>`` (all time)
    and ``<name>_<window>`` for each window."""
    out = {}
    for name, tally in counts.items():
        out[name] = tally["total"]
        for window in WINDOWS:
            out[f"{name}_{window.name}"] = tally[window.name]
    return out


def _cart(name: str) -> Loader:
    """``cart_view``'s value and item count (both stored), without building its items."""

    def load(values: FieldValues) -> Any:
        cart = values.profile.cart
        if not cart:  # most customers
            values["cart_value"] = 0.0
            values["cart_items"] = 0
            return values[name]
        value = 0.0
        items = 0
        # In product order, as cart_view adds them: a float sum depends on its order.
        for _, line in sorted(cart.items()) if len(cart) > 1 else cart.items():
            quantity = 0
            for _, delta in line.changes:
                quantity += delta
            if quantity <= 0 or line.price_at < 0:
                continue  # removed again, or only ever removed (no price known)
            value += line.price * quantity
            items += 1
        values["cart_value"] = float(rounded(value, 2))
        values["cart_items"] = items
        return values[name]

    return load


def _ranked(values: FieldValues) -> list[tuple[float, str]]:
    """``affinity_view`` at ``last_seen`` as (-score, category), in its order."""
    p = values.profile
    factor = 0.5 ** (max(0, p.last_seen - p.affinity_ref) / values.rules.affinity_half_life)
    ranked = []
    for category, score in p.affinity.items():
        ranked.append((-rounded(score * factor, 6), category))  # negating a float is exact
    ranked.sort()
    return ranked


def _top_categories(values: FieldValues) -> Any:
    return [category for _, category in _ranked(values)[:TOP_CATEGORIES]]


def _category_affinity(values: FieldValues) -> Any:
    return {category: -score for score, category in _ranked(values)}


def _window(window: Window, name: str) -> Loader:
    """A loader of one window's three measures (all stored): ``windows.read``'s sums."""
    events_name, orders_name, revenue_name = (f"{m}_{window.name}" for m in MEASURES)

    def load(values: FieldValues) -> Any:
        as_of = values.profile.last_seen
        lo = windows.first_bucket(window, as_of)
        buckets = values.profile.buckets
        events, orders, revenue = windows.totals(buckets, window.granularity, lo, as_of)
        values[events_name] = events
        values[orders_name] = orders
        values[revenue_name] = float(rounded(revenue, 2))
        return values[name]

    return load


_LOADERS: dict[str, Loader] = {
    "customer_id": _customer_id,
    "events": lambda values: values.profile.events,
    "sessions": _sessions,
    "orders": lambda values: values.profile.orders,
    "revenue": _revenue,
    "net_revenue": _net_revenue,
    "average_order_value": _average_order_value,
    "refunds": lambda values: values.profile.refunds,
    "days_since_first_seen": _days_since_first_seen,
    "recency_days": _recency_days,
    "counts": lambda values: dict(values.profile.counts),
    "channels": lambda values: dict(values.profile.channels),
    "consent": _consent,
    "churn_risk": _churn_risk,
    "rfm": _rfm,
    "clv": _clv,
    "propensity": _propensity,
    "persona": _persona,
    "next_order_in_days": _next_order_in_days,
    "best_send_hour": _best_send_hour,
    "traits": _traits,
    "custom": _custom,
    "cart_value": _cart("cart_value"),
    "cart_items": _cart("cart_items"),
    "top_categories": _top_categories,
    "category_affinity": _category_affinity,
    **{
        name: _window(window, name)
        for window in WINDOWS
        for name in (f"{m}_{window.name}" for m in MEASURES)
    },
}
if set(_LOADERS) != set(FIELDS):  # a field without a loader would read as absent forever
    raise AssertionError(f"fields without a loader: {sorted(set(FIELDS) ^ set(_LOADERS))}")


# Below this, x * 10**digits is within 2**-17 of its exact value (one rounding, half an
# ulp), far inside the margin ``rounded`` keeps, and an integer that large is exact.
_ROUNDING_BOUND = 2.0**37
# Adding this to a double below 2**51 in magnitude (and taking it away again) rounds it
# to an integer, ties to even, in two float operations: no int object is made.
_TO_INTEGER = 1.5 * 2.0**52


def rounded(x: float, digits: int) -> float:
    """``round(x, digits)``, exactly, mostly without its decimal conversion.

    ``round`` gives the double nearest to x rounded to ``digits`` decimals. With
    y = x * 10**digits computed in floating point, when y is within 0.4999 of an
    integer k, the exact x * 10**digits is within 0.5 of k too (y's error is below
    2**-17), so k is its nearest integer and the answer is the double nearest to
    k / 10**digits: the correctly rounded division ``k / 10.0**digits``. Otherwise (near
    a half, ties included: 0.125 to 2 digits) ``round`` itself decides.

    >>> rounded(2.675, 2), round(2.675, 2), rounded(-0.0000001, 4)
    (2.67, 2.67, -0.0)
    """
    scale = 10.0**digits
    y = x * scale
    if -_ROUNDING_BOUND < y < _ROUNDING_BOUND:
        k = (y + _TO_INTEGER) - _TO_INTEGER
        if abs(y - k) < 0.4999:
            return k / scale if k else math.copysign(0.0, x)
    return round(x, digits)


def document_fields(
    document: dict[str, Any],
    churn_risk: float | None = None,
    rfm: dict[str, Any] | None = None,
    next_purchase: dict[str, Any] | None = None,
    clv: dict[str, Any] | None = None,
    propensity: dict[str, float] | None = None,
    persona: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields of a rendered profile document (``profile.view.render``) read at its
    ``last_seen``; tests feed the oracle's documents through the same function.
    ``next_purchase`` and ``clv`` are the scored document's sections of those names
    (``profile_document``, at ``last_seen`` and ``CLV_HORIZON_DAYS``)."""
    affinity: dict[str, float] = document["category_affinity"]
    out: dict[str, Any] = {
        "customer_id": document["customer_id"] or document["id"],
        "events": document["events"],
        "sessions": document["sessions"],
        "orders": document["orders"],
        "revenue": float(document["revenue"]),
        "net_revenue": float(document["rfm"]["monetary"]),
        "average_order_value": float(document["average_order_value"]),
        "refunds": document["refunds"]["count"],
        "cart_value": float(document["cart"]["value"]),
        "cart_items": len(document["cart"]["items"]),
        "top_categories": list(affinity)[:TOP_CATEGORIES],
        "category_affinity": dict(affinity),
        "counts": dict(document["counts"]),
        "channels": dict(document["channels"]),
        "consent": {k: v for k, v in document["consent"].items() if v is not None},
        "custom": custom_fields(document["custom_counts"]),
        "traits": dict(document["traits"]),
    }
    # Model outputs only with personalization consent, as on the scored document.
    if document["consent"]["personalization"] is not False:
        window = best_window(_hour_weights(document["send_hours"]))
        if window is not None:
            out["best_send_hour"] = window.hour
        if next_purchase is not None:
            out["next_order_in_days"] = next_purchase["next_order_in_days"]
        if clv is not None and clv["p_alive"] is not None:
            out["clv"] = {name: clv[name] for name in CLV_FIELDS}
        if propensity is not None:
            out["propensity"] = dict(propensity)
        if persona is not None:
            out["persona"] = persona["id"]
    recency = document["rfm"]["recency_days"]
    if recency is not None:
        out["recency_days"] = float(recency)
    if document["first_seen"] is not None:  # None: minimised (analytics consent withheld)
        out["days_since_first_seen"] = _days_between(document["first_seen"], document["last_seen"])
    for name, window in document["windows"].items():
        for measure in MEASURES:
            value = window[measure]
            out[f"{measure}_{name}"] = float(value) if measure == "revenue" else int(value)
    if churn_risk is not None:
        out["churn_risk"] = float(churn_risk)
    if rfm is not None:
        out["rfm"] = rfm
    return out


_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _hour_weights(named: Mapping[str, int]) -> dict[int, int]:
    """The weights of a rendered ``send_hours`` ('Thu 19h' -> weight) by hour of the week."""
    return {_DAY_NAMES.index(name[:3]) * 24 + int(name[4:6]): w for name, w in named.items()}


def _days_between(first: str, last: str) -> float:
    start = datetime.fromisoformat(first.replace("Z", "+00:00"))
    end = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return round((end - start).total_seconds() / 86_400, 4)


def sample() -> dict[str, Any]:
    """A record with every field present: start-up checks evaluate definitions on it."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        if name in ("top_categories",):
            out[name] = ["shoes"]
        elif name in ("category_affinity",):
            out[name] = {"shoes": 1.0}
        elif name in ("counts", "channels"):
            out[name] = {"web": 1}
        elif name == "consent":
            out[name] = {"marketing": True}
        elif name == "clv":
            out[name] = dict.fromkeys(CLV_FIELDS, 1.0)
        elif name == "propensity":
            out[name] = {"email": 0.5, "offer": 0.5}
        elif name == "traits":
            out[name] = {"country": "DE", "plan": "pro"}
        elif name == "rfm":
            out[name] = {"r": 3, "f": 3, "m": 3, "score": "333", "segment": "need_attention"}
        elif name == "customer_id":
            out[name] = "C-1"
        elif name == "custom":
            counted = {"total": 1, **{window.name: 1 for window in WINDOWS}}
            out[name] = custom_fields({"wishlist_added": counted})
        elif name in (
            "events",
            "sessions",
            "orders",
            "refunds",
            "cart_items",
            "best_send_hour",
        ) or name.startswith(("events_", "orders_")):
            out[name] = 1
        else:
            out[name] = 1.0
    return out
