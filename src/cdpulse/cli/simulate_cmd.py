"""``cdpulse simulate``: write a seeded synthetic shop's events as JSON Lines.

The same arguments always give the same bytes. With ``--malformed`` a fraction of the
lines are broken on purpose (see ``cdpulse.simulate.malformed``), to exercise the
dead-letter path; ``--nulls``, ``--price-unit`` and ``--stall`` inject a broken producer
(``cdpulse.simulate.breakage``), to exercise the input monitors and the trigger gate.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.table import Table

from cdpulse.contract.topics import STREAM_OF_TYPE, Stream
from cdpulse.ops.progress import Reporter
from cdpulse.simulate import DEFAULT_START, Bias, Event, Shop
from cdpulse.simulate.breakage import Nulls, PriceUnit, Problem, Stall, broken
from cdpulse.simulate.malformed import mix_malformed

# When a problem runs, in hours after --start: FROM or FROM..UNTIL.
_WHEN = "@FROM_HOUR[..UNTIL_HOUR]"
# The broken producer's flags (simulate/breakage.py): flag, what it takes, help.
_BREAKAGE = (
    (
        "--nulls",
        "TYPE.FIELD",
        "a broken producer sends the property null, from hour FROM after --start (to "
        "UNTIL): page_viewed.title@48 or page_viewed.title@48..60; repeatable",
    ),
    (
        "--price-unit",
        "FACTOR",
        "prices and amounts multiplied by FACTOR (100: cents for euros) from hour FROM "
        "(to UNTIL): 100@48; repeatable",
    ),
    (
        "--stall",
        "STREAM",
        "a stream (clickstream, transactions, customers) stops from hour FROM (to "
        "UNTIL): clickstream@60..66; repeatable",
    ),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate`` to the ``cdpulse`` command line."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic shop's events as JSON Lines",
        description="Write the events of a seeded synthetic shop as JSON Lines, in time order.",
    )
    parser.add_argument(
        "--customers", type=_at_least(0), default=1000, help="customers (default 1000)"
    )
    parser.add_argument("--days", type=_at_least(1), default=30, help="days simulated (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        help=f"first instant, ISO date or datetime, UTC (default {DEFAULT_START.date()})",
    )
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    parser.add_argument(
        "--malformed",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="share of lines broken on purpose, in [0, 1) (default 0)",
    )
    parser.add_argument(
        "--bias",
        type=_bias,
        default=None,
        metavar="COUNTRY[:COPIES]",
        help="inject a measurement bias: the views of the customers of COUNTRY are sent "
        "COPIES times (default 3), their behaviour unchanged (cdpulse evaluate fairness "
        "should flag it)",
    )
    parser.add_argument(
        "--responsive",
        action="store_true",
        help="newsletter clicks follow each customer's purchase intent (the mean rate "
        "unchanged): a pattern cdpulse evaluate campaign should learn",
    )
    for flag, what, help_text in _BREAKAGE:
        parser.add_argument(flag, action="append", default=[], metavar=what + _WHEN, help=help_text)
    parser.set_defaults(func=run)


def problems(args: argparse.Namespace) -> list[Problem]:
    """The problems the flags ask for, at times relative to ``args.start``."""
    return [
        _problem(flag, text, args.start)
        for flag, _, _ in _BREAKAGE
        for text in getattr(args, flag.removeprefix("--").replace("-", "_"))
    ]


def _problem(flag: str, text: str, start: datetime) -> Problem:
    what, sep, when = text.partition("@")
    begin, _, end = when.partition("..")
    fix = f"{flag} {text!r}: give WHAT{_WHEN}, hours after --start, e.g. "
    try:
        after = start + timedelta(hours=float(begin))
        until = start + timedelta(hours=float(end)) if end else None
    except ValueError:
        raise SystemExit(fix + "page_viewed.title@48..60") from None
    if not sep or (until is not None and until <= after):
        raise SystemExit(fix + "clickstream@60..66 (UNTIL after FROM)")
    if flag == "--nulls":
        kind, _, name = what.partition(".")
        if kind not in STREAM_OF_TYPE or not name:
            raise SystemExit(fix + "page_viewed.title@48 (an event type and its property)")
        return Nulls(kind, name, after, until)
    if flag == "--price-unit":
        try:
            factor = float(what)
        except ValueError:
            raise SystemExit(fix + "100@48 (a factor: 100 for cents)") from None
        if factor <= 0:
            raise SystemExit(fix + "100@48 (a factor above 0)")
        return PriceUnit(factor, after, until)
    streams: dict[str, Stream] = {s: s for s in STREAM_OF_TYPE.values()}
    stream = streams.get(what)
    if stream is None:
        raise SystemExit(fix + f"clickstream@60 (a stream: {', '.join(sorted(streams))})")
    return Stall(stream, after, until)


def _bias(text: str) -> Bias:
    country, _, copies = text.partition(":")
    try:
        return Bias(country.strip().upper(), int(copies) if copies else 3)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a country and, optionally, copies of 2 or more: FR or FR:3 ({exc})"
        ) from exc


def run(args: argparse.Namespace) -> int:
    """Simulate, write the lines, and print a summary on stderr."""
    shop = Shop(
        args.customers, args.days, args.seed, args.start, bias=args.bias, responsive=args.responsive
    )
    stats = _Stats()
    # A separate stream for the breakage, so the valid lines are the same at any fraction.
    events = broken(shop.events(), problems(args))
    lines = mix_malformed(
        stats.counted(events), args.malformed, random.Random(f"malformed:{args.seed}")
    )
    if args.out is None:
        _write(lines, sys.stdout.buffer, stats, lambda days: None)
    else:
        with args.out.open("wb") as out, Reporter("simulate (days)", args.days) as progress:
            _write(lines, out, stats, progress.advance)
            progress.advance(args.days - progress.done)
    Console(stderr=True).print(stats.table(len(shop.customers)))
    return 0


def _write(
    lines: Iterator[tuple[bytes, str | None]],
    out: BinaryIO,
    stats: _Stats,
    advance_days: Callable[[int], None],
) -> None:
    reported = 0
    for raw, reason in lines:
        out.write(raw + b"\n")
        if reason is not None:
            stats.malformed[reason] += 1
        elif stats.days_seen - 1 > reported:
            # a day is done once an event of the next one appears
            advance_days(stats.days_seen - 1 - reported)
            reported = stats.days_seen - 1


@dataclass
class _Stats:
    """What was written: events per type, anonymous links, malformed lines per reason."""

    by_type: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    links: int = 0
    days_seen: int = 0
    _last_day: str = ""

    def counted(self, events: Iterator[Event]) -> Iterator[Event]:
        """Pass ``events`` through, counting them."""
        for event in events:
            self.by_type[event["type"]] += 1
            if event["type"] == "identify" and "anonymous_id" in event:
                self.links += 1
            day = event["timestamp"][:10]
            if day != self._last_day:
                self._last_day = day
                self.days_seen += 1
            yield event

    def table(self, customers: int) -> Table:
        """The summary printed when the run ends."""
        table = Table(title="cdpulse simulate", show_header=False)
        table.add_row("customers", f"{customers:,}")
        table.add_row("anonymous visitors linked by identify", f"{self.links:,}")
        table.add_row("events", f"{sum(self.by_type.values()):,}")
        for event_type, n in self.by_type.most_common():
            table.add_row(f"  {event_type}", f"{n:,}")
        table.add_row("malformed lines", f"{sum(self.malformed.values()):,}")
        for reason, n in self.malformed.most_common():
            table.add_row(f"  {reason}", f"{n:,}")
        return table


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _start(text: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (naive means UTC)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or datetime (e.g. 2026-01-01)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
