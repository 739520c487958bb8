"""A profile document (as the API or the oracle shows it) flattened by hand into the
columns of ``cdpulse export profiles``: what the export's rows are compared with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cdpulse.contract.events import EVENT_TYPES

CHANNELS = ("web", "app", "email", "store", "call_center", "partner")
TIMES = ("as_of", "first_seen", "last_seen", "first_order_at", "last_order_at", "identified_at")


def millis(text: str | None) -> int | None:
    return None if text is None else round(datetime.fromisoformat(text).timestamp() * 1000)


def columns(
    document: dict[str, Any], traits: Iterable[str], horizon_days: int = 90
) -> dict[str, Any]:
    """The export's row of ``document``: times as epoch ms, personal traits as the document
    holds them (pseudonyms), other trait values as their text."""
    churn = document.get("churn") or {}
    clv = document.get("clv") or {}
    row: dict[str, Any] = {
        "id": document["id"],
        "customer_id": document["customer_id"],
        **{name: millis(document[name]) for name in TIMES},
        "events": document["events"],
        "sessions": document["sessions"],
        **{f"count_{kind}": document["counts"].get(kind, 0) for kind in EVENT_TYPES},
        **{f"channel_{c}": document["channels"].get(c, 0) for c in CHANNELS},
        "orders": document["orders"],
        "revenue": document["revenue"],
        "average_order_value": document["average_order_value"],
        "refunds_count": document["refunds"]["count"],
        "refunds_amount": document["refunds"]["amount"],
        "cart_items": sum(i["quantity"] for i in document["cart"]["items"]),
        "cart_value": document["cart"]["value"],
        "churn_risk": churn.get("risk"),
        "churn_model_version": churn.get("model_version"),
        "clv_p_alive": clv.get("p_alive"),
        f"clv_expected_purchases_{horizon_days}d": clv.get(f"expected_purchases_{horizon_days}d"),
        f"clv_expected_value_{horizon_days}d": clv.get(f"expected_value_{horizon_days}d"),
        "clv_model_version": clv.get("model_version"),
    }
    for window, counts in document["windows"].items():
        for measure, value in counts.items():
            row[f"window_{window}_{measure}"] = value
    for key, value in document["rfm"].items():
        row[f"rfm_{key}"] = value
    for purpose, granted in document["consent"].items():
        row[f"consent_{purpose}"] = granted
    for name in traits:
        value = document["traits"].get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        row[f"trait_{name}"] = None if value is None else str(value)
    return row
