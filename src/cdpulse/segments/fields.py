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

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from cdpulse.privacy.consent import PURPOSES
from cdpulse.profile import windows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.view import affinity_view, cart_view
from cdpulse.profile.windows import DAY, WINDOWS

TOP_CATEGORIES = 3
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
    **{
        f"{measure}_{window.name}": f"{measure} in the last {window.name} before the last event"
        for window in WINDOWS
        for measure in MEASURES
    },
}


def profile_fields(
    profile: Profile, rules: Rules, rfm: dict[str, Any] | None = None
) -> ProfileRecord:
    """The record a segment expression is evaluated on, at ``profile.last_seen``."""
    return ProfileRecord(profile, rules, rfm)


class ProfileRecord(Mapping[str, Any]):
    """``document_fields(render(profile, last_seen))``, computed lazily by group.

    Conditions read a few fields; rendering the whole profile for each changed customer
    cost ~110 us, most of it windows, cart and affinity. Each group here is computed
    with the same functions ``render`` uses, on first read; a unit test checks the whole
    record equals the rendered one.
    """

    def __init__(self, profile: Profile, rules: Rules, rfm: dict[str, Any] | None) -> None:
        self.profile = profile
        self.rules = rules
        self.rfm = rfm
        self._values: dict[str, Any] = {}
        self.done: set[str] = set()

    def _load(self, group: str) -> None:
        p = self.profile
        as_of = p.last_seen
        if group == "cart":
            cart = cart_view(p)
            self._values |= {"cart_value": float(cart["value"]), "cart_items": len(cart["items"])}
        elif group == "affinity":
            affinity = affinity_view(p, as_of, self.rules)
            self._values |= {
                "top_categories": list(affinity)[:TOP_CATEGORIES],
                "category_affinity": affinity,
            }
        elif group == "windows":
            for name, window in windows.read(p.buckets, as_of).items():
                for measure in MEASURES:
                    value = window[measure]
                    self._values[f"{measure}_{name}"] = (
                        float(value) if measure == "revenue" else int(value)
                    )
        else:
            self._values |= _basic(p, self.rfm)
        self.done.add(group)

    def get(self, name: str, default: Any = None) -> Any:
        group = _GROUP.get(name, "basic")
        if group not in self.done:
            self._load(group)
        return self._values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for group in ("basic", "cart", "affinity", "windows"):
            if group not in self.done:
                self._load(group)
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(list(iter(self)))


_GROUP: dict[str, str] = {
    "cart_value": "cart",
    "cart_items": "cart",
    "top_categories": "affinity",
    "category_affinity": "affinity",
    **{f"{m}_{w.name}": "windows" for w in WINDOWS for m in MEASURES},
}


def _basic(p: Profile, rfm: dict[str, Any] | None) -> dict[str, Any]:
    """The cheap fields, with ``render``'s rounding."""
    out: dict[str, Any] = {
        "customer_id": p.customer_id or p.id,
        "events": p.events,
        "sessions": p.sessions_closed + len(p.spans),
        "orders": p.orders,
        "revenue": float(round(p.revenue, 2)),
        "net_revenue": float(round(p.revenue - p.refunded, 2)),
        "average_order_value": float(round(p.revenue / p.orders, 2)) if p.orders else 0.0,
        "refunds": p.refunds,
        "counts": dict(p.counts),
        "channels": dict(p.channels),
        "consent": {k: p.consent[k][1] for k in PURPOSES if k in p.consent},
    }
    if p.events:  # a profile minimised by withheld analytics consent keeps no times
        out["days_since_first_seen"] = round((p.last_seen - p.first_seen) / DAY, 4)
    if p.last_order_at is not None:
        out["recency_days"] = float(round((p.last_seen - p.last_order_at) / DAY, 4))
    if p.churn_risk is not None:
        out["churn_risk"] = float(p.churn_risk)
    if rfm is not None:
        out["rfm"] = rfm
    return out


def document_fields(
    document: dict[str, Any], churn_risk: float | None = None, rfm: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fields of a rendered profile document (``profile.view.render``) read at its
    ``last_seen``; tests feed the oracle's documents through the same function."""
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
    }
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
        elif name == "rfm":
            out[name] = {"r": 3, "f": 3, "m": 3, "score": "333", "segment": "need_attention"}
        elif name == "customer_id":
            out[name] = "C-1"
        elif name in ("events", "sessions", "orders", "refunds", "cart_items") or name.startswith(
            ("events_", "orders_")
        ):
            out[name] = 1
        else:
            out[name] = 1.0
    return out
