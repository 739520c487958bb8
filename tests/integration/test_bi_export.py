"""``cdpulse export`` against real Kafka, Redis, a worker and the api: every exported row
equals the profile the api serves, flattened (``tests/bi_rows.py``), with typed columns,
in Parquet and in CSV; a customer without analytics consent is not in the files; ``--since
last`` exports only the profiles seen after the previous export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from cdpulse.bi.tables import SEGMENT_SCHEMA, profile_schema
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.producer import Producer
from cdpulse.profile.view import iso
from cdpulse.simulate.shop import Shop
from tests.bi_rows import columns
from tests.integration.conftest import Env, drained, wait_until
from tests.oracle import PSEUDONYM_KEY, millis

TRAITS = TraitPolicy(pseudonymizer=Pseudonymizer(PSEUDONYM_KEY))
SEGMENTS_FILE = "rfm: false\nsegments:\n  - name: everyone\n    when: orders >= 0\n"


def export(env: Env, *args: str) -> dict[str, Any]:
    """Run ``cdpulse export``; the manifest of what it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "cdpulse", "export", *args],
        env={**os.environ, **env.variables},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = Path(args[args.index("--out") + 1])
    manifest: dict[str, Any] = json.loads((out / f"{args[0]}.manifest.json").read_text())
    assert manifest["file"] in done.stdout
    return manifest


def read(directory: Path, manifest: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """The exported file read back with pyarrow, checked against ``schema``."""
    path = directory / manifest["file"]
    if manifest["format"] == "parquet":
        table = pq.read_table(path)
    else:  # a null is an empty cell, text is quoted
        options = pa_csv.ConvertOptions(column_types=schema, strings_can_be_null=True)
        table = pa_csv.read_csv(path, convert_options=options)
    assert table.schema == schema
    assert table.num_rows == manifest["rows"]
    return table


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows, times as epoch milliseconds."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, pc.cast(table.column(i), pa.int64()))
    return list(table.to_pylist())


def served(api: str, profile_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{api}/v1/profiles/{profile_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_export_profiles_and_segments_equal_what_the_api_serves(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=30, days=6, seed=12).events())
    last = max(millis(e["timestamp"]) for e in events)
    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})
    refuser, *others = customers
    refusal = {
        "event_id": "refusal-1",
        "type": "consent_updated",
        "timestamp": iso(last - 60_000),
        "channel": "web",
        "customer_id": refuser,
        "properties": {"purposes": {"analytics": False}},
    }
    known = others[-1]
    identify = {
        "event_id": "identify-1",
        "type": "identify",
        "timestamp": iso(last - 120_000),
        "channel": "web",
        "customer_id": known,
        "properties": {"traits": {"email": "Bob@Example.com", "country": "FR"}},
    }
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(SEGMENTS_FILE, encoding="utf-8")
    roles = env.roles(CDPULSE_SEGMENTS_FILE=str(definitions))
    api = roles.api.url
    with Producer.from_settings(env.settings) as producer:
        for event in [*events, refusal, identify]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the shop")

    settings = env.settings
    schema = profile_schema(settings.trait_allow_list, settings.clv_horizon_days)
    stored = {
        key.decode().split("{")[1].split("}")[0]
        for key in env.redis.scan_iter(match=f"{env.name}:{{*}}:profile", count=1000)
    }
    # the shop withholds analytics for a few customers itself
    withheld = {i for i in stored if served(api, i)["consent"]["analytics"] is False}
    assert refuser in withheld

    out = tmp_path / "bi"
    first = export(env, "profiles", "--format", "parquet", "--out", str(out))
    table = read(out, first, schema)
    exported = rows(table)
    by_id = {r["id"]: r for r in exported}
    assert len(by_id) == len(exported), "an id exported twice"
    assert set(by_id) == stored - withheld
    assert first["left_out_without_analytics_consent"] == len(withheld)
    for row in exported:
        assert row == columns(served(api, row["id"]), settings.trait_allow_list), row["id"]
    assert by_id[known]["trait_email"] == TRAITS.pseudonym("email", "bob@example.com")
    assert by_id[known]["trait_country"] == "FR"
    assert not [v for r in exported for v in r.values() if "example.com" in str(v).lower()]

    as_csv = export(env, "profiles", "--format", "csv", "--out", str(tmp_path / "csv"))
    assert rows(read(tmp_path / "csv", as_csv, schema)) == exported

    members = export(env, "segments", "--format", "csv", "--out", str(out))
    listed = httpx.get(f"{api}/v1/segments/everyone/members?limit=1000", timeout=10).json()
    assert refuser in listed["members"]
    got = rows(read(out, members, SEGMENT_SCHEMA))
    assert {(r["segment"], r["id"]) for r in got} == {
        ("everyone", i) for i in listed["members"] if i not in withheld
    }
    assert members["left_out_without_analytics_consent"] == len(withheld & set(listed["members"]))

    # More events for two customers, an hour after the shop: only what was seen at or
    # after the previous export's as_of leaves in the incremental file.
    moved = others[:2]
    later = [
        {
            "event_id": f"later-{i}",
            "type": "page_viewed",
            "timestamp": iso(last + 3_600_000 + i),
            "channel": "web",
            "customer_id": customer,
            "properties": {"url": "/again"},
        }
        for i, customer in enumerate(moved)
    ]
    with Producer.from_settings(env.settings) as producer:
        for event in later:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the later events")
    since = export(env, "profiles", "--since", "last", "--out", str(out))
    assert since["since"] == first["as_of"] and since["file"] != first["file"]
    incremental = rows(read(out, since, schema))
    at_previous = {r["id"] for r in exported if r["last_seen"] >= first["as_of_ms"]}
    assert {r["id"] for r in incremental} == set(moved) | at_previous
    for row in incremental:
        assert row == columns(served(api, row["id"]), settings.trait_allow_list), row["id"]
