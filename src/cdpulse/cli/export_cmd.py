"""``cdpulse export profiles|segments|kpis|cohorts --format parquet|csv --out DIR``: typed
files for BI.

Profiles: one row per profile whose consent allows analytics (``bi/tables.py``), the same
numbers and scores as ``GET /v1/profiles/{id}`` at the newest watermark. Segments: one row
per (segment, member) of the same consent. ``--since`` exports the profiles seen at or
after a time (event time), ``--since last`` those seen since the previous export in DIR.
KPIs and cohorts: the live KPI counters, long (``bi/kpis.py``): the numbers
``GET /v1/kpis`` and ``/v1/cohorts`` are made of.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cdpulse.bi.files import FORMATS
from cdpulse.cli.main import CliError
from cdpulse.settings import Settings, get_settings

TABLES = ("profiles", "segments", "kpis", "cohorts")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write profiles, segment members, KPIs or cohorts as Parquet or CSV for BI tools",
    )
    parser.add_argument("table", choices=TABLES, help="what to export")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="default parquet")
    parser.add_argument("--out", required=True, type=Path, help="directory (made if missing)")
    parser.add_argument(
        "--since",
        help="profiles only: those seen at or after this RFC 3339 time (event time), or "
        "'last' for those seen since the previous export in --out",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if args.since is not None and args.table != "profiles":
        raise CliError(f"--since applies to profiles only; drop it to export {args.table}")
    out = _directory(args.out)
    settings = get_settings()
    since = _since(args.since, out)
    export = (
        _profiles(settings, out, args.format, since)
        if args.table == "profiles"
        else _segments(settings, out, args.format)
        if args.table == "segments"
        else _counters(settings, out, args.format, args.table)
    )
    try:
        print(asyncio.run(export))
    except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
        raise CliError(
            f"cannot reach Redis at {settings.redis_url} ({exc}); start it with "
            "`make stack-up` or set CDPULSE_REDIS_URL"
        ) from exc
    return 0


def _directory(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {str(path)!r} is a file; give a directory (it is made if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"cannot make --out directory {str(path)!r} ({exc}); choose another"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"cannot write into --out {str(path)!r}; choose a writable directory")
    return path


def _since(text: str | None, out: Path) -> int | None:
    from cdpulse.bi.files import manifest_path, read_manifest

    if text is None:
        return None
    if text == "last":
        manifest = read_manifest(out, "profiles")
        if manifest is None:
            raise CliError(
                f"--since last: no earlier export in {str(out)!r} "
                f"({manifest_path(out, 'profiles').name} is missing); run one without --since"
            )
        return int(manifest["as_of_ms"])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise CliError(
            f"--since {text!r} is not an RFC 3339 time with a zone; "
            "give e.g. 2026-12-01T00:00:00Z, or 'last'"
        )
    return int(moment.timestamp() * 1000)


async def _profiles(settings: Settings, out: Path, fmt: Any, since: int | None) -> str:
    from cdpulse.bi.files import TableFile, file_name, write_manifest
    from cdpulse.bi.tables import exportable, profile_row, profile_schema
    from cdpulse.models.churn.scoring import profile_document
    from cdpulse.ops.progress import Reporter
    from cdpulse.privacy.seal import Seal
    from cdpulse.profile.rules import Rules
    from cdpulse.profile.view import iso
    from cdpulse.store.models import RedisClvStore, churn_store
    from cdpulse.store.scan import ProfileScan

    store = _store(settings)
    try:
        seal = Seal.from_settings(settings)
        snapshot = await churn_store(store.client, settings.redis_prefix, seal).load()
        clv = RedisClvStore(store.client, settings.redis_prefix, seal)
        await clv.refresh()
        as_of, total = await store.watermark(), await store.count()
        rules = Rules.from_settings(settings)
        horizon = settings.clv_horizon_days
        path = out / file_name("profiles", fmt, as_of, since)
        withheld = 0
        schema = profile_schema(rules.traits.allowed, horizon)
        with Reporter("export profiles", total) as progress, TableFile(path, fmt, schema) as file:
            async for page in ProfileScan(store.client, settings.redis_prefix).profiles():
                rows = []
                for profile in page:
                    if not exportable(profile):
                        withheld += 1
                    elif since is None or profile.last_seen >= since:
                        document = profile_document(
                            profile, as_of, rules, snapshot, clv.get(), horizon
                        )
                        rows.append(profile_row(profile, document, as_of, rules.traits, horizon))
                file.write(rows)
                progress.advance(len(page))
    finally:
        await store.close()
    manifest = {
        "table": "profiles",
        "file": path.name,
        "format": fmt,
        "as_of": iso(as_of),
        "as_of_ms": as_of,
        "since": iso(since),
        "rows": file.rows,
        "left_out_without_analytics_consent": withheld,
    }
    write_manifest(out, "profiles", manifest)
    return (
        f"wrote {file.rows} profiles to {path} (as of {iso(as_of)}"
        f"{f', seen since {iso(since)}' if since is not None else ''}; "
        f"{withheld} left out without analytics consent)"
    )


async def _segments(settings: Settings, out: Path, fmt: Any) -> str:
    from cdpulse.bi.files import TableFile, file_name, write_manifest
    from cdpulse.bi.tables import SEGMENT_SCHEMA, exportable, segment_row
    from cdpulse.ops.progress import Reporter
    from cdpulse.profile.view import iso
    from cdpulse.store.scan import ProfileScan
    from cdpulse.store.segments import RedisMembershipStore

    store = _store(settings)
    try:
        scan = ProfileScan(store.client, settings.redis_prefix)
        as_of, names = await store.watermark(), await scan.segments()
        sizes = await RedisMembershipStore(store.client, settings.redis_prefix).sizes(names)
        path = out / file_name("segments", fmt, as_of, None)
        withheld = 0
        with (
            Reporter("export segments", sum(sizes.values())) as progress,
            TableFile(path, fmt, SEGMENT_SCHEMA) as file,
        ):
            for name in names:
                async for page in scan.members(name):
                    kept = [p for p in page if exportable(p)]
                    withheld += len(page) - len(kept)
                    file.write([segment_row(name, p, as_of) for p in kept])
                    progress.advance(len(page))
    finally:
        await store.close()
    manifest = {
        "table": "segments",
        "file": path.name,
        "format": fmt,
        "as_of": iso(as_of),
        "as_of_ms": as_of,
        "segments": names,
        "rows": file.rows,
        "left_out_without_analytics_consent": withheld,
    }
    write_manifest(out, "segments", manifest)
    return (
        f"wrote {file.rows} memberships of {len(names)} segments to {path} "
        f"(as of {iso(as_of)}; {withheld} left out without analytics consent)"
    )


async def _counters(settings: Settings, out: Path, fmt: Any, table: str) -> str:
    """The KPI counters (``kpis``: days and weeks) or the cohorts, as one file."""
    from cdpulse.bi.files import TableFile, file_name, write_manifest
    from cdpulse.bi.kpis import COHORT_SCHEMA, KPI_SCHEMA, cohort_rows, kpi_rows
    from cdpulse.kpis.fields import COHORT, DAY, WEEK
    from cdpulse.profile.view import iso
    from cdpulse.store.kpis import RedisKpis

    store = _store(settings)
    try:
        kpis = RedisKpis(store.client, settings.redis_prefix)
        as_of = await store.watermark()
        kinds = (DAY, WEEK) if table == "kpis" else (COHORT,)
        found = {name: fields for kind in kinds for name, fields in (await kpis.all(kind)).items()}
    finally:
        await store.close()
    path = out / file_name(table, fmt, as_of, None)
    rows = cohort_rows if table == "cohorts" else kpi_rows
    schema = COHORT_SCHEMA if table == "cohorts" else KPI_SCHEMA
    with TableFile(path, fmt, schema) as file:
        for name, fields in found.items():
            file.write(rows(name, fields))
    manifest = {
        "table": table,
        "file": path.name,
        "format": fmt,
        "as_of": iso(as_of),
        "as_of_ms": as_of,
        "periods": len(found),
        "rows": file.rows,
    }
    write_manifest(out, table, manifest)
    return f"wrote {file.rows} rows of {len(found)} periods to {path} (as of {iso(as_of)})"


def _store(settings: Settings) -> Any:
    from cdpulse.connections import redis_options
    from cdpulse.store.redis import RedisProfileStore

    return RedisProfileStore.from_url(
        settings.redis_url, settings.redis_prefix, **redis_options(settings)
    )
