"""``cdpulse bench``: measure the engine on real Kafka, Redis and role processes; report it.

cdpulse bench [--events N] [--customers C] [--workers 1|2] [--rate R] [--http-rate R]
              [--no-ceilings] [--no-steady] [--stage-events N] [--out FILE.json] [--chart FILE.png]
cdpulse bench report RESULT.json      the Markdown report again, from the JSON
cdpulse bench chart RESULT.json --out FILE.png
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
        help="benchmark the engine against its ceilings on real Kafka and Redis",
        description=(
            "One run: the simulated shop's events produced once; the bare-consumer and "
            "hand-written minimal-profile ceilings; `cdpulse worker`, `learner` and `api` "
            "processes at full speed (throughput, learner lag, CPU per role); a steady phase "
            "at half that capacity (produce → written and → recommendation latency); the same "
            "with 1,000 reads/s per endpoint from separate load processes; two workers "
            "(scaling); the pipeline's stages in-process. Starts deploy/local/stack.sh when "
            "nothing answers at CDPULSE_KAFKA_BOOTSTRAP and CDPULSE_REDIS_URL (unless "
            "--no-stack). 100,000 events took 9 minutes on a busy 2-core machine."
        ),
    )
    add = parser.add_argument
    add(
        "--events",
        type=_positive(int),
        default=200_000,
        help="events in the backlog every throughput phase reads (default 200000)",
    )
    add(
        "--customers",
        type=_positive(int),
        default=10_000,
        help="simulated customers (default 10000)",
    )
    add(
        "--workers",
        type=int,
        choices=(1, 2, 4),
        default=2,
        help="2 (default) also measures two workers on two partitions; 4 also four workers "
        "(scale-out; needs --partitions 4 or more)",
    )
    add(
        "--partitions",
        type=_positive(int),
        default=2,
        help="partitions per input topic (default 2)",
    )
    add(
        "--rate",
        type=_positive(float),
        help="events/s of the steady phases (default: half the measured 1-worker capacity)",
    )
    add(
        "--max-rate",
        type=_positive(float),
        default=10_000.0,
        help="most events/s the steady phases are prepared for (default 10000)",
    )
    add(
        "--warmup-seconds",
        type=_positive(float),
        default=5.0,
        help="steady phases: seconds before measuring (default 5)",
    )
    add(
        "--latency-seconds",
        type=_positive(float),
        default=30.0,
        help="measured length of the steady phase without reads (default 30)",
    )
    add(
        "--http-rate",
        type=_positive(float),
        default=1_000.0,
        help="GET requests/s per endpoint while ingesting (default 1000)",
    )
    add(
        "--http-seconds",
        type=_positive(float),
        default=20.0,
        help="length of the reads (default 20)",
    )
    add(
        "--learner-wait",
        type=_positive(float),
        default=60.0,
        help="most seconds to wait for the learner to catch up (default 60)",
    )
    add(
        "--stage-events",
        type=int,
        default=50_000,
        help="events timed stage by stage in-process; 0 skips it (default 50000)",
    )
    add("--no-ceilings", action="store_true", help="skip the two ceilings")
    add(
        "--no-steady",
        action="store_true",
        help="skip the two steady phases (throughput only, for quick comparisons)",
    )
    add("--seed", type=int, default=1, help="simulator seed (default 1)")
    add("--label", default="", help="what is measured, kept in the result (e.g. a branch)")
    add("--out", type=Path, help="write the result as JSON here")
    add("--chart", type=Path, help="draw the chart (PNG) here")
    add("--no-stack", action="store_true", help="never start the local stack")
    add("--keep", action="store_true", help="keep the run's topics and Redis keys")
    add(
        "--profile-roles",
        type=Path,
        metavar="DIR",
        help="run the roles under cProfile, writing DIR/<phase>-<name>.prof (slows them down)",
    )
    add("--work-dir", type=Path, help="logs and data of the run (default: a temporary folder)")
    parser.set_defaults(func=run)  # fmt: skip

    actions = parser.add_subparsers(dest="bench_action", metavar="ACTION")
    chart = actions.add_parser("chart", help="draw the chart of a result JSON")
    chart.add_argument("result", type=Path)
    chart.add_argument("--out", type=Path, required=True, help="PNG to write")
    chart.set_defaults(func=run_chart)
    report = actions.add_parser("report", help="print a result JSON as Markdown vs the targets")
    report.add_argument("result", type=Path)
    report.set_defaults(func=run_report)


def run(args: argparse.Namespace) -> int:
    from cdpulse.bench.driver import BenchOptions, command_line, run_bench, source
    from cdpulse.bench.report import render_markdown
    from cdpulse.bench.stack import StackUnavailable, ensure_stack
    from cdpulse.cli.main import CliError
    from cdpulse.settings import get_settings

    settings = get_settings()
    if args.stage_events and settings.redis_url.startswith("redis+cluster"):
        raise CliError(
            "the stage split (--stage-events) times one Redis, not a Redis Cluster: add "
            "--stage-events 0 to bench a cluster"
        )
    if args.partitions < args.workers:
        raise CliError(
            f"--workers {args.workers} needs at least {args.workers} partitions per input "
            f"topic (--partitions {args.partitions}): a worker without a partition idles; "
            f"add --partitions {args.workers}"
        )
    options = BenchOptions(
        events=args.events,
        customers=args.customers,
        workers=args.workers,
        partitions=args.partitions,
        rate=args.rate,
        max_rate=args.max_rate,
        warmup_seconds=args.warmup_seconds,
        latency_seconds=args.latency_seconds,
        http_rate=args.http_rate,
        http_seconds=args.http_seconds,
        learner_wait=args.learner_wait,
        ceilings=not args.no_ceilings,
        steady=not args.no_steady,
        stage_events=args.stage_events,
        seed=args.seed,
        profile_dir=args.profile_roles,
        keep=args.keep,
    )
    try:
        stack = ensure_stack(settings, allow_start=not args.no_stack)
    except StackUnavailable as exc:
        raise CliError(str(exc)) from exc
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cdpulse-bench-"))
    print(f"bench: logs in {work_dir}", file=sys.stderr)
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
    return 1 if result.get("failed") else 0


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
