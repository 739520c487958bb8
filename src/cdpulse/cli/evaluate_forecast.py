"""``cdpulse evaluate forecast --input FILE``: the demand forecasts replayed over a file.

The events run through the worker's batch pipeline in-process (``pipeline.replay``: the
same KPI fold the workers run, over the in-memory store), so the daily counters are the
ones the live engine writes to Redis; then the closed days (the same low watermark and
lateness as the learner's, and the same ``walk`` past a long silence) are learned by the
same ``ForecastBook`` the learner keeps. Each day's value scores the forecasts made
before it, beside seasonal-naive's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdpulse.cli.main import CliError
from cdpulse.contract.topics import Topics
from cdpulse.kpis.fields import DAY, epoch_day, period_name
from cdpulse.models.forecast import ForecastBook, closed_through, low_watermark, walk
from cdpulse.settings import Settings, get_settings

Partitioner = Callable[[str, int], int]
BATCH = 500


def register_forecast(models: Any) -> None:
    """Add ``evaluate forecast`` to the ``evaluate`` subcommands."""
    forecast = models.add_parser(
        "forecast",
        help="demand forecasts: MAE and MASE against seasonal-naive, per level and horizon",
    )
    forecast.add_argument(
        "--input", required=True, type=Path, help="JSON Lines, in event time order"
    )
    forecast.add_argument("--json", action="store_true", help="print the result as JSON")
    forecast.set_defaults(func=run_forecast)


@dataclass
class ForecastReplay:
    """What a replay learned: the book and the daily counters it learned from."""

    events: int
    rejected: int
    book: ForecastBook
    days: dict[int, dict[str, int]]  # epoch day -> that day's KPI counters


async def replay_forecast(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    progress: Callable[[int], None] | None = None,
) -> ForecastReplay:
    """Replay JSON Lines through the pipeline and learn every closed day's forecasts."""
    from cdpulse.contract.message import Message
    from cdpulse.pipeline.batch import BatchReport
    from cdpulse.pipeline.memory import MemoryState
    from cdpulse.pipeline.replay import Messages, feed, replay_pipeline
    from cdpulse.pipeline.stages import Models

    state, pipeline = replay_pipeline(settings, Models(), None, partition_of)
    assert isinstance(state, MemoryState)
    topics = Topics.from_settings(settings)

    async def flush(batch: list[Message]) -> BatchReport:
        return await pipeline.run(batch)

    cutter = Messages(topics, settings.topic_partitions, partition_of)
    events, rejected = await feed(lines, cutter, flush, BATCH, progress)
    prefix = period_name(DAY, 0).partition(":")[0] + ":"
    days = {
        epoch_day(name.removeprefix(prefix)): counts
        for name, counts in state.kpis.items()
        if name.startswith(prefix)
    }
    low = low_watermark(state.watermarks, settings.topic_partitions, topics.transactions)
    last = closed_through(low, int(settings.forecast_lateness_seconds * 1000))
    book = ForecastBook(products=settings.forecast_products)
    plan = walk(
        book, (day for day, counts in days.items() if counts), last, settings.forecast_max_gap_days
    )
    book.learn_days((d, days.get(d, {})) for d in plan.days)
    book.version = 1 if book.last_day is not None else 0
    return ForecastReplay(events, rejected, book, days)


def run_forecast(args: argparse.Namespace) -> int:
    from cdpulse.contract.partitions import partition_of
    from cdpulse.ops.progress import Reporter

    if not args.input.is_file():
        raise CliError(f"no such file {str(args.input)!r}; give a JSON Lines file of events")
    lines = args.input.read_bytes().splitlines()
    with Reporter("evaluate forecast", len(lines)) as progress:
        result = asyncio.run(
            replay_forecast(lines, get_settings(), partition_of, progress=progress.advance)
        )
    book = result.book
    rows = [q.to_dict() for q in book.quality()]
    if args.json:
        print(json.dumps({"days_learned": _days(book), "quality": rows}, indent=2))
        return 0
    if book.last_day is None:
        raise CliError(
            f"{args.input}: no day is closed yet (every partition's newest order must "
            "be a day past the day's end, plus CDPULSE_FORECAST_LATENESS_SECONDS); give a "
            "longer history"
        )
    print(
        f"{result.events} events ({result.rejected} rejected), {_days(book)} days learned, "
        f"{len(book.series)} series; MASE < 1 beats seasonal-naive (last week's same day)"
    )
    print(f"{'level':10}{'target':9}{'horizon':>8}{'forecasts':>11}{'MAE':>12}{'MASE':>8}")
    for r in rows:
        mase = "-" if r["mase"] is None else f"{r['mase']:.3f}"
        print(
            f"{r['level']:10}{r['target']:9}{r['horizon']!s:>8}{r['forecasts']:>11}"
            f"{r['mae']:>12.3f}{mase:>8}"
        )
    return 0


def _days(book: ForecastBook) -> int:
    return max((s.units.days for s in book.series.values()), default=0)
