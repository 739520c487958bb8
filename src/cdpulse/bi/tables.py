"""The exported tables: their typed columns, and one row per profile or segment member.

A profile's row is its API document (``profile_document``: the same numbers, rounding and
scores as ``GET /v1/profiles/{id}``) flattened into fixed columns; its times are the
profile's own epoch milliseconds, typed as UTC timestamps. Only profiles whose consent
allows ``analytics`` are exported (``exportable``): a row holding only the id of someone
who refused would still tell the warehouse they were here. Personal traits appear only as
pseudonyms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

import pyarrow as pa

from cdpulse.contract.events import EVENT_TYPES, Channel
from cdpulse.privacy.consent import PURPOSES, allows
from cdpulse.privacy.pseudonyms import canonical
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import WINDOWS

CHANNELS: tuple[str, ...] = get_args(Channel)
TIME = pa.timestamp("ms", tz="UTC")


def exportable(profile: Profile) -> bool:
    """Whether the profile may leave for analytics at all: its consent allows ``analytics``."""
    return allows(profile, "analytics")


def profile_schema(traits: Iterable[str], horizon_days: float) -> pa.Schema:
    """The columns of the profiles table: ``traits`` are the allow-listed trait names."""
    days = int(horizon_days)
    return pa.schema(
        [
            ("id", pa.string()),
            ("customer_id", pa.string()),
            ("as_of", TIME),
            ("first_seen", TIME),
            ("last_seen", TIME),
            ("events", pa.int64()),
            ("sessions", pa.int64()),
            *[(f"count_{kind}", pa.int64()) for kind in EVENT_TYPES],
            *[(f"channel_{channel}", pa.int64()) for channel in CHANNELS],
            ("orders", pa.int64()),
            ("revenue", pa.float64()),
            ("average_order_value", pa.float64()),
            ("first_order_at", TIME),
            ("last_order_at", TIME),
            ("refunds_count", pa.int64()),
            ("refunds_amount", pa.float64()),
            ("cart_items", pa.int64()),
            ("cart_value", pa.float64()),
            *[
                column
                for w in WINDOWS
                for column in (
                    (f"window_{w.name}_events", pa.int64()),
                    (f"window_{w.name}_orders", pa.int64()),
                    (f"window_{w.name}_revenue", pa.float64()),
                )
            ],
            ("rfm_recency_days", pa.float64()),
            ("rfm_frequency", pa.int64()),
            ("rfm_monetary", pa.float64()),
            *[(f"consent_{purpose}", pa.bool_()) for purpose in PURPOSES],
            ("identified_at", TIME),
            *[(f"trait_{name}", pa.string()) for name in sorted(traits)],
            ("churn_risk", pa.float64()),
            ("churn_model_version", pa.int64()),
            ("clv_p_alive", pa.float64()),
            (f"clv_expected_purchases_{days}d", pa.float64()),
            (f"clv_expected_value_{days}d", pa.float64()),
            ("clv_model_version", pa.int64()),
        ]
    )


def profile_row(
    profile: Profile,
    document: dict[str, Any],
    as_of: int,
    traits: TraitPolicy,
    horizon_days: float,
) -> dict[str, Any]:
    """The row of ``profile``, whose API document at ``as_of`` is ``document``.

    Trait values are their text (``canonical``); a personal trait is its pseudonym even
    if a profile stored before pseudonymisation held the clear value.
    """
    days = int(horizon_days)
    churn = document.get("churn") or {}
    clv = document.get("clv") or {}
    row: dict[str, Any] = {
        "id": profile.id,
        "customer_id": profile.customer_id,
        "as_of": max(as_of, profile.last_seen),
        "first_seen": profile.first_seen if profile.events else None,
        "last_seen": profile.last_seen if profile.events else None,
        "events": document["events"],
        "sessions": document["sessions"],
        **{f"count_{kind}": document["counts"].get(kind, 0) for kind in EVENT_TYPES},
        **{f"channel_{c}": document["channels"].get(c, 0) for c in CHANNELS},
        "orders": document["orders"],
        "revenue": document["revenue"],
        "average_order_value": document["average_order_value"],
        "first_order_at": profile.first_order_at,
        "last_order_at": profile.last_order_at,
        "refunds_count": document["refunds"]["count"],
        "refunds_amount": document["refunds"]["amount"],
        "cart_items": sum(item["quantity"] for item in document["cart"]["items"]),
        "cart_value": document["cart"]["value"],
        "rfm_recency_days": document["rfm"]["recency_days"],
        "rfm_frequency": document["rfm"]["frequency"],
        "rfm_monetary": document["rfm"]["monetary"],
        **{f"consent_{p}": document["consent"][p] for p in PURPOSES},
        "identified_at": profile.identified_at,
        "churn_risk": churn.get("risk"),
        "churn_model_version": churn.get("model_version"),
        "clv_p_alive": clv.get("p_alive"),
        f"clv_expected_purchases_{days}d": clv.get(f"expected_purchases_{days}d"),
        f"clv_expected_value_{days}d": clv.get(f"expected_value_{days}d"),
        "clv_model_version": clv.get("model_version"),
    }
    for name, counts in document["windows"].items():
        row[f"window_{name}_events"] = int(counts["events"])
        row[f"window_{name}_orders"] = int(counts["orders"])
        row[f"window_{name}_revenue"] = counts["revenue"]
    for name in sorted(traits.allowed):
        value = document["traits"].get(name)
        if value is not None and name in traits.personal:
            value = traits.pseudonym(name, value)
        row[f"trait_{name}"] = None if value is None else canonical(value)
    return row


SEGMENT_SCHEMA = pa.schema(
    [
        ("segment", pa.string()),
        ("id", pa.string()),
        ("customer_id", pa.string()),
        ("as_of", TIME),
    ]
)


def segment_row(segment: str, profile: Profile, as_of: int) -> dict[str, Any]:
    """One member of ``segment``; when it entered is not stored (only how often its
    membership changed, ``Profile.segments``), so the row has no entered-at."""
    return {
        "segment": segment,
        "id": profile.id,
        "customer_id": profile.customer_id,
        "as_of": max(as_of, profile.last_seen),
    }
