"""The committed JSON Schemas are the contract as enforced: they must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from cdpulse.contract.events import EVENT_TYPES
from cdpulse.contract.schemas import event_schemas, render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    expected = event_schemas()
    on_disk = {p.name for p in SCHEMAS.glob("*.json")}
    missing = sorted(set(expected) - on_disk)
    stale = sorted(on_disk - set(expected))
    assert not missing and not stale, f"run `make schemas`: missing {missing}, stale {stale}"
    for name, schema in expected.items():
        text = (SCHEMAS / name).read_text(encoding="utf-8")
        assert text == render(schema), f"schemas/{name} drifted from the models; run `make schemas`"


def test_there_is_one_schema_per_event_type() -> None:
    for event_type in EVENT_TYPES:
        schema = json.loads((SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
        assert schema["properties"]["type"]["const"] == event_type
        assert {"event_id", "type", "timestamp", "channel"} <= set(schema["required"])
