"""``cdpulse produce FILE|-``: send JSON Lines events to Kafka, reporting bad lines.

Each line is held to the contract, and a custom event to its schema in the operators'
folder (``CDPULSE_CUSTOM_EVENT_SCHEMAS``), before it is sent: a refused line is named by
file and line with the reason and the failing path, and is not sent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from cdpulse.settings import get_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce", help="validate JSON Lines events and send them to Kafka"
    )
    parser.add_argument("file", help="a JSON Lines file, or - for standard input")
    parser.add_argument(
        "--rate", type=float, default=0, help="events per second (default: as fast as possible)"
    )
    parser.set_defaults(func=run)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from cdpulse.cli.main import CliError
    from cdpulse.contract.custom_schemas import CustomSchemaError
    from cdpulse.ops.progress import Reporter
    from cdpulse.producer import Producer, ProducerRejected

    settings = get_settings()
    if args.file == "-":
        stream: BinaryIO = sys.stdin.buffer
        total = None
        label = "<stdin>"
    else:
        label = args.file
        path = Path(args.file)
        if not path.is_file():
            raise CliError(f"no such file {args.file!r}; give a JSON Lines file or - for stdin")
        stream = path.open("rb")
        total = _count_lines(path)
    try:
        producer = Producer.from_settings(settings)
    except CustomSchemaError as exc:
        raise CliError(str(exc)) from None
    except KafkaError as exc:
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); start it with "
            "`make stack-up` or set CDPULSE_KAFKA_BOOTSTRAP"
        ) from exc
    by_type: Counter[str] = Counter()
    rejected = 0
    started = time.monotonic()
    with producer, Reporter("produce", total) as progress:
        for number, line in enumerate(stream, start=1):
            progress.advance()
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                topic = producer.send(line)
            except ProducerRejected as exc:
                rejected += 1
                print(f"{label}: line {number}: {exc.rejection.reason}: {exc}", file=sys.stderr)
                continue
            by_type[topic] += 1
            if args.rate > 0:
                ahead = producer.sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if stream is not sys.stdin.buffer:
        stream.close()
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{n} to {t}" for t, n in sorted(by_type.items()))
    print(
        f"sent {producer.sent} events ({summary or 'none'}) in {elapsed:.1f}s; "
        f"rejected {rejected} lines",
        file=sys.stderr,
    )
    return 1 if rejected else 0
