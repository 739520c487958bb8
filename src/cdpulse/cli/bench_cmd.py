"""``cdpulse bench``: measure the engine on real Kafka, Redis and workers; chart a result.

cdpulse bench [--events N] [--customers C] [--workers 1|2] [--rate R]
              [--out FILE.json] [--chart FILE.png] [--no-stack]
cdpulse bench chart RESULT.json --out FILE.png
cdpulse bench report RESULT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark throughput, latency, memory and reads against real Kafka and Redis",
        description=(
            "Drive the simulated shop's events through Kafka into real `cdpulse worker` "
            "processes and report throughput, latency, CPU, memory, profile reads, scaling "
            "and the bare-consumer ceiling. Starts deploy/local/stack.sh when nothing "
            "answers at CDPULSE_KAFKA_BOOTSTRAP and CDPULSE_REDIS_URL (unless --no-stack)."
        ),
    )
    parser.add_argument(
        "--events",
        type=_positive(int),
        default=500_000,
        help="events per throughput phase (default 500000)",
    )
    parser.add_argument(
        "--customers",
        type=_positive(int),
        default=10_000,
        help="simulated customers (default 10000)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 (default) also measures two workers on two partitions",
    )
    parser.add_argument(
        "--rate",
        type=_positive(float),
        default=5_000.0,
        help="steady events/s of the latency phase (default 5000)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=_positive(float),
        default=30.0,
        help="length of the latency phase (default 30)",
    )
    parser.add_argument(
        "--http-rate",
        type=_positive(float),
        default=500.0,
        help="GET /v1/profiles requests/s (default 500)",
    )
    parser.add_argument(
        "--http-seconds",
        type=_positive(float),
        default=20.0,
        help="length of the read phase (default 20)",
    )
    parser.add_argument(
        "--stage-events",
        type=_positive(int),
        default=100_000,
        help="events timed stage by stage in-process (default 100000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument(
        "--label", default="", help="what is measured, kept in the result (e.g. the engine version)"
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--chart", type=Path, help="draw the chart (PNG) here")
    parser.add_argument("--no-stack", action="store_true", help="never start the local stack")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and Redis keys")
    parser.add_argument(
        "--profile-workers",
        type=Path,
        metavar="DIR",
        help="run workers under cProfile, writing DIR/<phase>-worker<i>.prof (slows them down)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="worker logs and data (default: a temporary folder)"
    )
    parser.set_defaults(func=run)

    actions = parser.add_subparsers(dest="bench_action", metavar="ACTION")
    chart = actions.add_parser("chart", help="draw the chart of a result JSON")
    chart.add_argument("result", type=Path)
    chart.add_argument("--out", type=Path, required=True, help="PNG to write")
    chart.set_defaults(func=run_chart)
    report = actions.add_parser("report", help="print a result JSON as a Markdown table vs targets")
    report.add_argument("result", type=Path)
    report.set_defaults(func=run_report)


def run(args: argparse.Namespace) -> int:
    from cdpulse.bench.driver import BenchOptions, command_line, run_bench, source
    from cdpulse.bench.report import render_markdown
    from cdpulse.bench.stack import StackUnavailable, ensure_stack
    from cdpulse.cli.main import CliError
    from cdpulse.settings import get_settings

    settings = get_settings()
    options = BenchOptions(
        events=args.events,
        customers=args.customers,
        workers=args.workers,
        rate=args.rate,
        latency_seconds=args.latency_seconds,
        http_rate=args.http_rate,
        http_seconds=args.http_seconds,
        stage_events=args.stage_events,
        seed=args.seed,
        profile_dir=args.profile_workers,
        keep=args.keep,
    )
    try:
        stack = ensure_stack(settings, allow_start=not args.no_stack)
    except StackUnavailable as exc:
        raise CliError(str(exc)) from exc
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cdpulse-bench-"))
    print(f"bench: worker logs in {work_dir}", file=sys.stderr)
    try:
        result = run_bench(options, settings, work_dir)
    finally:
        started = stack.started
        stack.stop()
    result["command"] = command_line()
    result["label"] = args.label
    result["source"] = source()
    result["stack_started_by_bench"] = started
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"bench: result in {args.out}", file=sys.stderr)
    if args.chart is not None:
        from cdpulse.bench.chart import draw

        draw(result, args.chart)
        print(f"bench: chart in {args.chart}", file=sys.stderr)
    print(render_markdown(result))
    return 0


def _load(path: Path) -> dict[str, Any]:
    from cdpulse.cli.main import CliError

    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(
            f"cannot read {path} ({exc}); give a JSON written by `cdpulse bench --out`"
        ) from exc
    return data


def run_chart(args: argparse.Namespace) -> int:
    from cdpulse.bench.chart import draw

    draw(_load(args.result), args.out)
    print(f"bench: chart in {args.out}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from cdpulse.bench.report import render_markdown

    print(render_markdown(_load(args.result)))
    return 0


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse
