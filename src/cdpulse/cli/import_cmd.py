"""``cdpulse import csv FILE``: a CRM/ERP transaction export as ``order_completed`` events.

Writes JSON Lines (to ``--out`` or stdout), or sends to Kafka with ``--produce``.
Unreadable rows are listed on stderr with their line numbers and skipped. Exit code 0
when every row was imported, 1 when some were skipped, 2 for a missing file or a
column that is not in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

from cdpulse.cli.main import CliError
from cdpulse.importer import (
    CsvFormat,
    ImportedOrder,
    OrderColumns,
    OrderDefaults,
    SkippedRow,
    UnknownColumn,
    UnreadableFile,
    read_orders,
)
from cdpulse.importer.csv_orders import WHITESPACE
from cdpulse.ops.progress import Reporter

SHOWN_SKIPS = 50  # skipped rows listed one by one; past that only counted
_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_CHANNELS = ("web", "app", "email", "store", "call_center", "partner")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` (with its one format, ``csv``) to the ``cdpulse`` command line."""
    parser = subparsers.add_parser(
        "import", help="import history from other systems", description=__doc__
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    csv_parser = formats.add_parser(
        "csv",
        help="orders from a CSV or whitespace-separated transaction export",
        description="Turn each row (or each order, with --order-col) into order_completed.",
    )
    csv_parser.add_argument("file", type=Path, help="the export")
    columns = csv_parser.add_argument_group(
        "columns", "header names, or 1-based positions with --no-header"
    )
    columns.add_argument("--customer-col", required=True, help="the customer id")
    columns.add_argument("--time-col", required=True, help="when the purchase happened")
    columns.add_argument("--amount-col", required=True, help="the amount paid, >= 0")
    columns.add_argument("--order-col", help="an order id: rows of one order become one event")
    columns.add_argument("--category-col", help="a product category (default 'unknown')")
    csv_parser.add_argument(
        "--delimiter",
        type=_delimiter,
        default=",",
        help="one character, tab, or 'whitespace' for runs of blanks as in CDNOW (default ,)",
    )
    csv_parser.add_argument(
        "--no-header", dest="header", action="store_false", help="the first row is data"
    )
    csv_parser.add_argument(
        "--time-format", help="a strptime pattern (default: ISO 8601 or YYYYMMDD); naive is UTC"
    )
    csv_parser.add_argument("--encoding", default="utf-8-sig", help="file encoding (utf-8)")
    csv_parser.add_argument("--currency", type=_currency, default="EUR", help="(default EUR)")
    csv_parser.add_argument(
        "--channel", choices=_CHANNELS, default="store", help="channel of the orders (store)"
    )
    output = csv_parser.add_mutually_exclusive_group()
    output.add_argument("--out", type=Path, help="JSON Lines output file (default: stdout)")
    output.add_argument("--produce", action="store_true", help="send the events to Kafka")
    csv_parser.set_defaults(func=run_csv)


def run_csv(args: argparse.Namespace) -> int:
    """Import the file; report skipped rows and a summary on stderr."""
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"no such file {str(path)!r}; give the path of a CSV export")
    columns = OrderColumns(
        customer=args.customer_col,
        time=args.time_col,
        amount=args.amount_col,
        order=args.order_col,
        category=args.category_col,
    )
    file_format = CsvFormat(args.delimiter, args.header, args.encoding, args.time_format)
    defaults = OrderDefaults(args.currency, args.channel)
    with ExitStack() as stack:
        progress = stack.enter_context(Reporter("import (rows)", _count_lines(path)))
        try:
            # columns are checked here, before any output is opened
            results = read_orders(path, columns, file_format, defaults, on_rows=progress.advance)
            if args.produce:
                send, sent_to = _producer(stack), "Kafka"
            elif args.out is not None:
                send, sent_to = _writer(stack.enter_context(args.out.open("wb"))), str(args.out)
            else:
                send, sent_to = _writer(sys.stdout.buffer), "stdout"
            events, skipped = _deliver(path, results, send)
        except UnknownColumn as exc:
            raise CliError(f"{path}: {exc}; fix --{exc.role}-col") from None
        except UnreadableFile as exc:
            raise CliError(str(exc)) from None
    summary = f"{path}: {progress.done:,} rows read, {events:,} events to {sent_to}"
    print(f"{summary}, {skipped:,} rows skipped", file=sys.stderr)
    return 1 if skipped else 0


def _deliver(
    path: Path,
    results: Iterator[ImportedOrder | SkippedRow],
    send: Callable[[dict[str, Any]], str | None],
) -> tuple[int, int]:
    """Send every event and list every skipped row; returns (events, skipped rows)."""
    events = skipped = 0
    for result in results:
        problem = result.reason if isinstance(result, SkippedRow) else send(result.event)
        if problem is None:
            events += 1
            continue
        skipped += 1
        if skipped <= SHOWN_SKIPS:
            print(f"{path}:{result.line}: skipped: {problem}", file=sys.stderr)
        elif skipped == SHOWN_SKIPS + 1:
            print(f"{path}: more rows skipped; counting them only", file=sys.stderr)
    return events, skipped


def _writer(out: BinaryIO) -> Callable[[dict[str, Any]], str | None]:
    def write(event: dict[str, Any]) -> None:
        out.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    return write


def _producer(stack: ExitStack) -> Callable[[dict[str, Any]], str | None]:
    # Kafka's client is imported only when asked for, so a file import needs no broker.
    from kafka.errors import KafkaError

    from cdpulse.producer import Producer, ProducerRejected
    from cdpulse.settings import get_settings

    settings = get_settings()
    try:
        producer = stack.enter_context(Producer.from_settings(settings))
    except KafkaError as exc:
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); start it or set "
            "CDPULSE_KAFKA_BOOTSTRAP"
        ) from exc

    def send(event: dict[str, Any]) -> str | None:
        try:
            producer.send(event)
        except ProducerRejected as exc:
            return exc.rejection.detail
        return None

    return send


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _delimiter(text: str) -> str:
    value = _DELIMITERS.get(text.lower(), text)
    if value != WHITESPACE and len(value) != 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not one character, tab, or {WHITESPACE!r} (for CDNOW-style files)"
        )
    return value


def _currency(text: str) -> str:
    if len(text) != 3 or not text.isalpha() or not text.isupper():
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 4217 code such as EUR")
    return text
