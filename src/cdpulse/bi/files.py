"""Export files: a table written batch by batch, in place only once complete, and the
manifest of the newest export of each table (what ``--since last`` starts from)."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from cdpulse.profile.view import iso

Format = Literal["parquet", "csv"]
FORMATS: tuple[Format, ...] = ("parquet", "csv")


def stamp(millis: int) -> str:
    """A file-name-safe UTC time: ``20261205T101500123Z``."""
    text = iso(millis) or ""
    return text.replace("-", "").replace(":", "").replace(".", "")


def file_name(table: str, fmt: Format, as_of: int, since: int | None) -> str:
    """``profiles-<as_of>.parquet``, or ``profiles-<as_of>-since-<since>.parquet`` for an
    incremental export: a later export never overwrites an earlier one's rows."""
    tail = "" if since is None else f"-since-{stamp(since)}"
    return f"{table}-{stamp(as_of)}{tail}.{fmt}"


class TableFile:
    """One export file: rows appended batch by batch into a hidden ``.part`` file, renamed
    into place when complete, so a BI tool never reads half an export."""

    def __init__(self, path: Path, fmt: Format, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        self._part = path.with_name(f".{path.name}.part")
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter = (
            pq.ParquetWriter(self._part, schema)
            if fmt == "parquet"
            else pa_csv.CSVWriter(self._part, schema)
        )

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
            self.rows += len(rows)

    def __enter__(self) -> TableFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writer.close()
        if exc_type is None:
            self._part.replace(self.path)
        else:
            self._part.unlink(missing_ok=True)


def manifest_path(directory: Path, table: str) -> Path:
    return directory / f"{table}.manifest.json"


def write_manifest(directory: Path, table: str, manifest: dict[str, Any]) -> None:
    """Record the newest export of ``table`` in ``directory``."""
    path = manifest_path(directory, table)
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    part.replace(path)


def read_manifest(directory: Path, table: str) -> dict[str, Any] | None:
    """The manifest of the newest export of ``table`` in ``directory``, if any."""
    path = manifest_path(directory, table)
    if not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest
