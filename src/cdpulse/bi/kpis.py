"""The KPI counters as exported tables: long and typed, for a BI tool to pivot.

``kpis``: one row per (period, metric, dimension value) of the day and week counters,
amounts as stored (money in cents); ``cohorts``: one row per (cohort, week since), with
the cohort's size. Nothing here is about one customer: the counters are sums.

>>> rows = kpi_rows("day:2026-01-05", {"orders": 3, "orders|c:web": 2, "_refused": 1})
>>> [(r["period"].isoformat(), r["metric"], r["dimension"], r["value"], r["amount"]) for r in rows]
[('2026-01-05', 'orders', None, None, 3), ('2026-01-05', 'orders', 'channel', 'web', 2)]
>>> weeks = cohort_rows("cohort:2025-12-29", {"customers": 4, "active:0": 4, "ordering:2": 1})
>>> [(r["week"], r["active"], r["ordering"]) for r in weeks]
[(0, 4, 0), (1, 0, 0), (2, 0, 1)]
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa

from cdpulse.kpis.fields import (
    ACTIVE,
    CATEGORY,
    COHORT_SIZE,
    DEMAND,
    DIMENSIONS,
    ORDERING,
    PRODUCT,
    split,
)

KPI_SCHEMA = pa.schema(
    [
        ("granularity", pa.string()),  # day or week (a week: its Monday)
        ("period", pa.date32()),
        ("metric", pa.string()),
        ("dimension", pa.string()),  # null: the total
        ("value", pa.string()),
        ("amount", pa.int64()),
    ]
)
COHORT_SCHEMA = pa.schema(
    [
        ("cohort", pa.date32()),  # the Monday of the first-order week
        ("customers", pa.int64()),
        ("week", pa.int64()),  # weeks since
        ("active", pa.int64()),
        ("ordering", pa.int64()),
    ]
)
# the demand series' dimensions too (not KPI dimensions: ``kpis.fields``)
_NAMES = {code: name for name, code in DIMENSIONS.items()} | {
    CATEGORY: "category",
    PRODUCT: "product",
    DEMAND: "demand",
}


def kpi_rows(period: str, counters: dict[str, int]) -> list[dict[str, Any]]:
    """The rows of one day or week hash (``day:YYYY-MM-DD``)."""
    granularity, _, day = period.partition(":")
    start = date.fromisoformat(day)
    rows = []
    for name, amount in sorted(counters.items()):
        metric, code, value = split(name)
        if metric.startswith("_"):
            continue  # the cap's own count, not a KPI
        rows.append(
            {
                "granularity": granularity,
                "period": start,
                "metric": metric,
                "dimension": _NAMES.get(code, code) if code else None,
                "value": value if code else None,
                "amount": amount,
            }
        )
    return rows


def cohort_rows(period: str, counters: dict[str, int]) -> list[dict[str, Any]]:
    """The rows of one cohort hash: every week since up to the newest one counted."""
    start = date.fromisoformat(period.partition(":")[2])
    weeks = [int(name.partition(":")[2]) for name in counters if ":" in name]
    return [
        {
            "cohort": start,
            "customers": counters.get(COHORT_SIZE, 0),
            "week": k,
            "active": counters.get(f"{ACTIVE}:{k}", 0),
            "ordering": counters.get(f"{ORDERING}:{k}", 0),
        }
        for k in range(max(weeks, default=-1) + 1)
    ]
