"""The OpenAPI 3.1 description of the KPI routes (``GET /v1/kpis/openapi.json``).

Its response schemas are the contract the routes keep: the integration test validates
every answer it gets against them, so the description cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from cdpulse.kpis.fields import DIMENSIONS
from cdpulse.kpis.report import MAX_DAYS, metrics

_NUMBER = {"type": ["number", "null"]}
_COUNT = {"type": "integer"}

# Every KPI a period carries; those a range total lacks are the distinct ones.
_ALL = metrics({})
_ADDITIVE = metrics({}, distinct=False)
_KPIS: dict[str, Any] = {
    "type": "object",
    "description": "The KPIs of one period, or one value of the dimension asked for. Money "
    "in the currency the events carry, summed as sent; rates are null without a "
    "denominator.",
    "properties": {
        name: _COUNT if isinstance(value, int) else _NUMBER for name, value in _ALL.items()
    },
    "required": sorted(_ALL),
    "additionalProperties": False,
}
_TOTAL: dict[str, Any] = {
    **_KPIS,
    "description": "The range's total of the KPIs that add up over periods (not the "
    "distinct counts: a visitor on two days is one visitor on neither total).",
    "properties": {name: _KPIS["properties"][name] for name in _ADDITIVE},
    "required": sorted(_ADDITIVE),
}
_STEP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "step": {"enum": ["product_view", "cart_add", "checkout", "order"]},
        "customers": {**_COUNT, "description": "customers reaching the step in the period"},
        "events": {**_COUNT, "description": "the step's events in the period"},
        "conversion": {**_NUMBER, "description": "customers / the step before's"},
        "event_conversion": {**_NUMBER, "description": "events / the step before's"},
    },
    "required": ["step", "customers", "events"],
    "additionalProperties": False,
}
_FUNNEL = {"type": "array", "items": _STEP, "minItems": 4, "maxItems": 4}
_BY_VALUE = {"type": "object", "additionalProperties": _KPIS}


def _range(
    period: dict[str, Any], total: dict[str, Any], by_value: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "granularity": {"enum": ["day", "week"]},
            "by": {"type": ["string", "null"]},
            "periods": {"type": "array", "items": period},
            "total": total,
            "total_by": {"type": "object", "additionalProperties": by_value},
            "refused_fields": {**_COUNT, "description": "counts a full hash refused"},
        },
        "required": ["from", "to", "granularity", "by", "periods", "total"],
        "additionalProperties": False,
    }


KPIS_RESPONSE = _range(
    {
        "type": "object",
        "properties": {
            "period": {"type": "string", "format": "date", "description": "its first day"},
            "kpis": _KPIS,
            "by": _BY_VALUE,
        },
        "required": ["period", "kpis"],
        "additionalProperties": False,
    },
    _TOTAL,
    {**_TOTAL, "description": "The range's total for one value of the dimension."},
)
FUNNELS_RESPONSE = _range(
    {
        "type": "object",
        "properties": {
            "period": {"type": "string", "format": "date"},
            "steps": _FUNNEL,
            "by": {"type": "object", "additionalProperties": _FUNNEL},
        },
        "required": ["period", "steps"],
        "additionalProperties": False,
    },
    {**_FUNNEL, "description": "The periods added up: a customer counts once per period."},
    _FUNNEL,
)
_CELL = {
    "type": "object",
    "properties": {
        "week": {**_COUNT, "description": "weeks since the cohort's first-order week"},
        "active": {**_COUNT, "description": "customers of the cohort who visited or ordered"},
        "ordering": {**_COUNT, "description": "customers of the cohort who ordered"},
        "active_share": _NUMBER,
        "ordering_share": _NUMBER,
    },
    "required": ["week", "active", "ordering", "active_share", "ordering_share"],
    "additionalProperties": False,
}
COHORTS_RESPONSE = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "cohorts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "cohort": {"type": "string", "format": "date", "description": "its Monday"},
                    "customers": {**_COUNT, "description": "first order in that week"},
                    "weeks": {"type": "array", "items": _CELL},
                },
                "required": ["cohort", "customers", "weeks"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["from", "to", "cohorts"],
    "additionalProperties": False,
}
_ERROR = {
    "description": "A parameter that cannot be answered: the error names it and the fix.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_FROM = _query(
    "from",
    "First day (UTC, YYYY-MM-DD); default 29 days (11 weeks) before 'to'.",
    {"type": "string", "format": "date"},
)
_TO = _query(
    "to",
    "Last day; default the day of the newest event time seen.",
    {"type": "string", "format": "date"},
)
_GRANULARITY = _query(
    "granularity",
    "day, or week (ISO weeks from Monday: the range widens to whole weeks).",
    {"enum": ["day", "week"], "default": "day"},
)
_BY = _query(
    "by",
    "Split each period by: channel, segment (the customer's when each save counted it), "
    "campaign (the visit's context.campaign, source/medium/name), first_touch and "
    "last_touch (orders and revenue), newsletter (email metrics), offer.",
    {"enum": sorted(DIMENSIONS)},
)


def _get(summary: str, description: str, params: list[Any], schema: dict[str, Any]) -> Any:
    return {
        "get": {
            "summary": summary,
            "description": description,
            "security": [{"bearer": ["read"]}],
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "400": _ERROR,
                "401": {"description": "No bearer token."},
                "403": {"description": "The token lacks scope 'read'."},
            },
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "cdpulse live KPIs",
        "version": "1",
        "description": "KPIs counted in the stream in event time, exactly once per event "
        f"(README: Live KPIs). A range holds at most {MAX_DAYS} days.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "paths": {
        "/v1/kpis": _get(
            "KPIs per day or week",
            "Visitors (new, returning, identified), sessions, the funnel, orders, revenue, "
            "refunds, average order value, repeat purchases, time between orders, newsletter "
            "and recommendation/offer click-through, per period and split by a dimension.",
            [_FROM, _TO, _GRANULARITY, _BY],
            KPIS_RESPONSE,
        ),
        "/v1/funnels": _get(
            "The purchase funnel",
            "Product view, cart add, checkout, order: customers and events per step and the "
            "conversion between steps, per period and split by a dimension.",
            [_FROM, _TO, _GRANULARITY, _BY],
            FUNNELS_RESPONSE,
        ),
        "/v1/cohorts": _get(
            "Retention cohorts",
            "Customers by the week of their first order; per week since, the share who came "
            "back and the share who ordered.",
            [
                {**_FROM, "description": "First cohort week's day; default 11 weeks before 'to'."},
                _TO,
            ],
            COHORTS_RESPONSE,
        ),
    },
}
