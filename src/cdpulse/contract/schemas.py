"""JSON Schema export: one file per event type, plus the dead letter.

``cdpulse schemas`` writes them into ``schemas/``; a test fails when the committed
files drift from the models, so the files are always the contract as enforced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.events import EVENT_CLASSES, EVENT_TYPES
from cdpulse.contract.outputs import RecommendationList, SegmentTransition
from cdpulse.contract.trigger import TriggerMessage

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema for every event type and output document."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, cls in zip(EVENT_TYPES, EVENT_CLASSES, strict=True):
        schema = cls.model_json_schema(mode="validation")
        schema["$schema"] = SCHEMA_DIALECT
        schema["$id"] = f"cdpulse/events/{event_type}.json"
        schema["title"] = event_type
        out[f"{event_type}.json"] = schema
    dead = TypeAdapter(DeadLetter).json_schema()
    dead["$schema"] = SCHEMA_DIALECT
    dead["$id"] = "cdpulse/outputs/dead_letter.json"
    out["dead_letter.json"] = dead
    recommendations = RecommendationList.model_json_schema(mode="serialization")
    recommendations["$schema"] = SCHEMA_DIALECT
    recommendations["$id"] = "cdpulse/outputs/recommendation_list.json"
    out["recommendation_list.json"] = recommendations
    segment = SegmentTransition.model_json_schema(mode="serialization")
    segment["$schema"] = SCHEMA_DIALECT
    segment["$id"] = "cdpulse/outputs/segment_transition.json"
    out["segment_transition.json"] = segment
    trigger = TriggerMessage.model_json_schema(mode="serialization")
    trigger["$schema"] = SCHEMA_DIALECT
    trigger["$id"] = "cdpulse/outputs/trigger.json"
    out["trigger.json"] = trigger
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in event_schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
