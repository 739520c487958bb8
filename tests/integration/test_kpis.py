"""The live KPIs against real Kafka, Redis, worker and api processes, checked by the oracle.

The simulated shop streams in; a worker that commits no offsets is killed halfway, so
its successor is handed the first half again; then a worker of a fresh consumer group
reads every message once more (a full replay). After each, the KPI counters in Redis
must equal ``tests.kpi_oracle``'s field by field (segment splits aside: the oracle does
not decide segments), the api must serve the same numbers, in the shape its OpenAPI
description promises, and ``cdpulse export kpis|cohorts`` must write them.

Identity and consent events go first (README: Live KPIs: what a customer who refused
analytics counted for depends on when the refusal was known).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis

from cdpulse.app.kpi_openapi import COHORTS_RESPONSE, FUNNELS_RESPONSE, KPIS_RESPONSE, OPENAPI
from cdpulse.pipeline.state import Changes, Save, SaveStatus
from cdpulse.producer import Producer
from cdpulse.profile.model import Profile
from cdpulse.simulate.shop import Shop
from cdpulse.store import state as state_store
from cdpulse.store.keys import keys_for
from cdpulse.store.kpis import kpi_key
from cdpulse.store.state import RedisState
from tests import kpi_oracle
from tests.integration.conftest import FAST_FAILOVER, Env, drained, wait_until
from tests.unit.test_kpis import FIRST, with_attribution

Event = dict[str, Any]


def _send(env: Env, events: list[Event]) -> None:
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)


def _stored(env: Env) -> kpi_oracle.Counters:
    """Every KPI hash under the test's prefix: period -> field -> amount (a Redis
    Cluster's shards summed)."""
    client = env.redis
    keys = keys_for(client, env.name)
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for key in client.scan_iter(match=keys.shared_pattern("kpis:*"), count=1000):
        period = keys.after_shard(key.decode()).removeprefix("kpis:")
        out[period].update({k.decode(): int(v) for k, v in client.hgetall(key).items()})
    return kpi_oracle.without_segments({period: dict(fields) for period, fields in out.items()})


def _check(env: Env, wanted: kpi_oracle.Counters, when: str) -> None:
    problems = kpi_oracle.differences(_stored(env), wanted)
    assert not problems, f"{when}: KPI counters differ from the oracle:\n  " + "\n  ".join(problems)


def test_kpis_equal_an_independent_count_after_a_kill_and_a_replay(
    env: Env, tmp_path: Path
) -> None:
    events = with_attribution(list(Shop(customers=140, days=15, seed=31).events()))
    first = [e for e in events if e["type"] in FIRST]
    rest = [e for e in events if e["type"] not in FIRST]
    half = len(rest) // 2
    wanted = kpi_oracle.expected([*first, *rest], now=datetime.now(UTC))
    assert sum(f.get("orders", 0) for p, f in wanted.items() if p.startswith("day:")) > 50

    # Offsets are committed every 10 minutes here: the kill loses every commit, and the
    # next worker is handed everything again.
    doomed = env.worker(CDPULSE_COMMIT_INTERVAL="600", **FAST_FAILOVER)

    def seen() -> float:
        return doomed.metric("cdpulse_events_applied_total") + doomed.metric(
            "cdpulse_duplicates_total"
        )

    _send(env, first)
    wait_until(lambda: seen() >= len(first), 300, "identity and consent to be applied")
    _send(env, rest[:half])
    wait_until(lambda: seen() >= len(first) + half, 300, "the first worker to apply a half")
    doomed.kill()
    second = env.worker(**FAST_FAILOVER)
    _send(env, rest[half:])
    wait_until(lambda: drained(env.settings), 300, "the second worker to drain its topics")
    assert second.metric("cdpulse_duplicates_total") >= half, "no re-delivery happened"
    _check(env, wanted, "after the kill")
    second.stop()

    # A fresh consumer group: every message delivered once more, nothing counted again.
    replay_group = f"{env.settings.app_id}-replay"
    replay = env.worker(CDPULSE_APP_ID=replay_group)
    replayed = env.settings.model_copy(update={"app_id": replay_group})
    wait_until(lambda: drained(replayed), 300, "the replay to read every message")
    assert replay.metric("cdpulse_events_applied_total") == 0
    assert replay.metric("cdpulse_duplicates_total") == len(events)
    _check(env, wanted, "after the replay")

    api = env.api()
    _check_api(api.url, wanted)
    _check_export(env, tmp_path, wanted)


def _check_export(env: Env, out: Path, wanted: kpi_oracle.Counters) -> None:
    """``cdpulse export kpis`` and ``cohorts`` hold the oracle's numbers, typed."""
    for table, fmt in (("kpis", "parquet"), ("cohorts", "csv")):
        done = subprocess.run(
            [sys.executable, "-m", "cdpulse", "export", table, "--format", fmt, "--out", str(out)],
            env={**os.environ, **env.variables},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    kpis = pq.read_table(next(out.glob("kpis-*.parquet")))
    assert kpis.schema.field("period").type == pa.date32()
    exported: dict[str, dict[str, int]] = {}
    codes = {"channel": "c", "segment": "s", "campaign": "k", "first_touch": "f"}
    codes |= {"last_touch": "l", "newsletter": "e", "offer": "o", "category": "g", "product": "p"}
    codes["demand"] = "d"  # the shop's demand (orders|d:shop), beside category and product
    for row in kpis.to_pylist():
        name = row["metric"]
        if row["dimension"] is not None:
            name += f"|{codes[row['dimension']]}:{row['value']}"
        exported.setdefault(f"{row['granularity']}:{row['period'].isoformat()}", {})[name] = row[
            "amount"
        ]
    periods = {p: f for p, f in wanted.items() if not p.startswith("cohort:")}
    problems = kpi_oracle.differences(kpi_oracle.without_segments(exported), periods)
    assert not problems, "exported KPIs differ from the oracle:\n  " + "\n  ".join(problems)
    schema = pa.schema([("cohort", pa.date32()), ("customers", pa.int64())])
    cohorts = pa_csv.read_csv(
        next(out.glob("cohorts-*.csv")),
        convert_options=pa_csv.ConvertOptions(column_types=schema),
    ).to_pylist()
    assert cohorts, "no cohort exported"
    for row in cohorts:
        counters = wanted[f"cohort:{row['cohort'].isoformat()}"]
        assert row["customers"] == counters["customers"]
        assert row["active"] == counters.get(f"active:{row['week']}", 0)
        assert row["ordering"] == counters.get(f"ordering:{row['week']}", 0)


def _check_api(url: str, wanted: kpi_oracle.Counters) -> None:
    """The api serves the counters' numbers, in the shape of its OpenAPI description."""
    days = sorted(p.removeprefix("day:") for p in wanted if p.startswith("day:"))
    first, last = days[0], days[-1]
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v1/kpis/openapi.json").json() == OPENAPI

        by_channel = http.get("/v1/kpis", params={"from": first, "to": last, "by": "channel"})
        assert by_channel.status_code == 200, by_channel.text
        document = by_channel.json()
        jsonschema_rs.validate(KPIS_RESPONSE, document)
        for row in document["periods"]:
            counters = wanted.get(f"day:{row['period']}", {})
            kpis = row["kpis"]
            assert kpis["visitors"] == counters.get("visitors", 0), row["period"]
            assert kpis["orders"] == counters.get("orders", 0), row["period"]
            assert kpis["revenue"] == round(counters.get("revenue_cents", 0) / 100, 2)
            assert kpis["sessions"] == counters.get("sessions", 0)
            assert kpis["new_visitors"] + kpis["returning_visitors"] == kpis["visitors"]
            for channel, split in row["by"].items():
                assert split["visitors"] == counters.get(f"visitors|c:{channel}", 0)
        total_orders = sum(f.get("orders", 0) for p, f in wanted.items() if p.startswith("day:"))
        assert document["total"]["orders"] == total_orders

        weekly = http.get("/v1/kpis", params={"from": first, "to": last, "granularity": "week"})
        jsonschema_rs.validate(KPIS_RESPONSE, weekly.json())
        for row in weekly.json()["periods"]:
            counters = wanted.get(f"week:{row['period']}", {})
            assert row["kpis"]["visitors"] == counters.get("visitors", 0), row["period"]
            assert row["kpis"]["buyers"] == counters.get("buyers", 0), row["period"]

        funnel = http.get("/v1/funnels", params={"from": first, "to": last})
        jsonschema_rs.validate(FUNNELS_RESPONSE, funnel.json())
        for row in funnel.json()["periods"]:
            counters = wanted.get(f"day:{row['period']}", {})
            steps = {s["step"]: s for s in row["steps"]}
            assert steps["cart_add"]["customers"] == counters.get("cart_adders", 0)
            assert steps["order"]["events"] == counters.get("orders", 0)

        cohorts = http.get("/v1/cohorts", params={"from": first, "to": last})
        jsonschema_rs.validate(COHORTS_RESPONSE, cohorts.json())
        for row in cohorts.json()["cohorts"]:
            counters = wanted.get(f"cohort:{row['cohort']}", {})
            assert row["customers"] == counters.get("customers", 0)
            for cell in row["weeks"]:
                assert cell["active"] == counters.get(f"active:{cell['week']}", 0)
                assert cell["ordering"] == counters.get(f"ordering:{cell['week']}", 0)

        refused = http.get("/v1/kpis", params={"from": last, "to": first})
        assert refused.status_code == 400 and "swap" in refused.json()["error"]
        unknown = http.get("/v1/kpis", params={"by": "colour"})
        assert unknown.status_code == 400 and "channel" in unknown.json()["error"]


def test_write_lua_adds_a_saves_counters_only_with_the_save_and_caps_a_hash(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KPI hunk of ``write.lua``, alone: counters land with their save, a refused save
    adds none, and a hash at its cap takes no new field but counts the refusal."""
    monkeypatch.setattr(state_store, "FIELDS_CAP", 3)
    day = "day:2026-01-05"

    def save(profile_id: str, version: int, counts: dict[str, int]) -> Save:
        return Save(Profile(id=profile_id), version, kpis={day: counts})

    async def main() -> list[dict[str, SaveStatus]]:
        client = aioredis.Redis.from_url(env.settings.redis_url)
        state = RedisState(client, env.name, pseudonym=lambda i: i, shard_of=lambda i: 0)
        try:
            return [
                await state.write(Changes(saves=saves))
                for saves in (
                    [save("C-1", 0, {"orders": 1, "revenue_cents": 250})],
                    # A stale version: refused, its counters with it; the other lands.
                    [save("C-1", 0, {"orders": 5}), save("C-2", 0, {"orders": 2, "visitors": 1})],
                    # Three fields now: a new one is refused and counted, a known one adds.
                    [save("C-3", 0, {"visitors": 1, "orders|k:spam-1": 1})],
                )
            ]
        finally:
            await client.aclose()

    first, refused, capped = asyncio.run(main())
    assert first == {"C-1": SaveStatus.SAVED} and capped == {"C-3": SaveStatus.SAVED}
    assert refused == {"C-1": SaveStatus.CONFLICT, "C-2": SaveStatus.SAVED}
    stored = {k.decode(): int(v) for k, v in env.redis.hgetall(kpi_key(env.name, day)).items()}
    assert stored == {"orders": 3, "revenue_cents": 250, "visitors": 2, "_refused": 1}
