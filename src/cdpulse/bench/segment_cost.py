"""What deciding one changed customer's segments costs, in CPU microseconds, by part.

``python -m cdpulse.bench.segment_cost [--events /tmp/shop.jsonl] [--segments FILE]``

Profiles are built the way a worker builds them: the simulator's events (a file of
JSON lines, or ``Shop(customers, days, seed)`` when no file is given) go through the
worker's profile pipeline in batches of 2,000 over the in-memory store. Every
``--stride``-th identified profile a batch saves is snapshotted as it was saved, so
the sample holds profiles at the moment they changed, early small ones and late large
ones alike, as the tracker sees them. Each gets a churn risk (a hash of its id: a churn
model scores every customer) and the RFM sketches are built from the final base.

Each part is timed with ``time.process_time`` (CPU, which waiting for another process
on the machine does not inflate; sharing its caches still does) and divided by the
sample size; ``--repeat`` rounds give the spread. By default the whole sample is timed
at once, each profile cold when first read (the worst case); ``--chunk 270`` (what a
2,000-event batch of the simulator changes) times each chunk after an untimed run of
it, profiles in the caches (the best case). A worker lies in between. Parts:

* ``(loop)``: the benchmark's own loop, included in every row below;
* ``rfm``: the customer's sketch scores (``RfmSketches.score_profile``);
* ``fields``: the fields the book's conditions read, computed (``FieldValues``);
* ``conditions``: the conditions decided on those computed fields;
* ``transitions``: the changes against the generations stored before;
* ``total``: all of it per customer, ``decide`` as the tracker should call it (fields
  computed lazily: a condition that short-circuits skips some, so the total can be
  less than the sum of the parts);
* ``total, engine``: the same with every condition left to the Rust engine;
* ``tracker.py``: the path today's tracker takes (``evaluate(profile_fields(...))``).

``--profile`` runs one more round of ``total`` under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from cdpulse.contract.message import Message
from cdpulse.models.clv.lifetime import OrderSummary
from cdpulse.pipeline.batch import ProfilePipeline
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.profile.model import Profile, decode, encode
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import SegmentBook, load
from cdpulse.segments.fields import FieldValues, profile_fields
from cdpulse.segments.membership import decide, evaluate, transitions
from cdpulse.segments.rfm import RfmScore
from cdpulse.segments.sketches import RfmSketches
from cdpulse.simulate.shop import Shop

BATCH = 2_000  # the worker's batch size
DEMO_BOOK = Path(__file__).resolve().parents[3] / "deploy" / "segments.yaml"


@dataclass(slots=True)
class Sample:
    """Changed customers as the tracker would see them, and the base's sketches.

    ``before[i]`` is the customer of ``profiles[i]`` as its previous change left it
    (None: its first), so the stored generations are those a worker would hold.
    """

    profiles: list[Profile]
    before: list[Profile | None]
    sketches: RfmSketches
    events: int


def raw_events(path: Path | None, customers: int, days: int, seed: int) -> Iterator[bytes]:
    """The events, one JSON document each: the file's lines, or a fresh simulation."""
    if path is not None:
        with path.open("rb") as lines:
            yield from (line for line in lines if line.strip())
        return
    for event in Shop(customers=customers, days=days, seed=seed).events():
        yield json.dumps(event).encode()


def build(events: Iterator[bytes], stride: int, limit: int | None) -> Sample:
    """Apply ``events`` batch by batch; keep every ``stride``-th changed customer."""
    # The simulated days may lie ahead of the wall clock: accept any future event.
    state = MemoryState()
    processor = ProfilePipeline(
        state,
        MemoryOutlet(keep=False),
        Stages(Engine(Rules(), Models())),
        partitions=1,
        max_future_skew=timedelta(days=3650),
    )
    kept: list[tuple[bytes, bytes | None]] = []
    latest: dict[str, bytes] = {}
    changed = applied = 0
    batch: list[Message] = []

    def flush() -> None:
        nonlocal changed
        result = asyncio.run(processor.run(list(batch)))
        for profile in result.work.saved.values():
            if profile.customer_id is None:
                continue  # anonymous visitors are not segmented
            blob = encode(profile)  # frozen as saved: later batches change the profile
            if changed % stride == 0:
                kept.append((blob, latest.get(profile.id)))
            latest[profile.id] = blob
            changed += 1
        batch.clear()

    for raw in events:
        if limit is not None and applied >= limit:
            break
        key = json.loads(raw).get("customer_id") or b"anon"
        batch.append(Message("events", 0, applied, str(key).encode(), raw, None))
        applied += 1
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    profiles = [_scored(blob) for blob, _ in kept]
    before = [None if blob is None else _scored(blob) for _, blob in kept]
    summaries = [OrderSummary.of(decode(blob)) for _, blob in state.blobs.values()]
    sketches = RfmSketches.build(
        (s.last_order_at, s.orders, s.net_revenue) for s in summaries if s is not None
    )
    return Sample(profiles, before, sketches, applied)


def _scored(blob: bytes) -> Profile:
    profile = decode(blob)
    # A churn model scores everyone; a hash of the id stands in for its score.
    profile.churn_risk = zlib.crc32((profile.customer_id or "").encode()) / 2**32
    return profile


def _tracker_score(sketches: RfmSketches, profile: Profile) -> RfmScore | None:
    """The customer's RFM score as today's tracker computes it (through OrderSummary)."""
    summary = OrderSummary.of(profile)
    if summary is None:
        return None
    return sketches.score(summary.last_order_at, summary.orders, summary.net_revenue)


def stored_before(book: SegmentBook, sample: Sample, rules: Rules) -> list[dict[str, int]]:
    """Each customer's stored generations: its previous state's members (odd), decided
    with today's sketches (their count does not matter to the cost, their parity does)."""
    out: list[dict[str, int]] = []
    for before in sample.before:
        if before is None:
            out.append({})
            continue
        members = decide(book, before, rules, sample.sketches.score_profile(before)).members
        out.append(dict.fromkeys(members, 1))
    return out


def engine_only(book: SegmentBook) -> SegmentBook:
    """``book`` with every condition left to the engine, as before the compiled subset."""
    return replace(
        book,
        segments=tuple(
            replace(s, condition=replace(s.condition, closure=None)) for s in book.segments
        ),
    )


Part = Callable[[int, int], None]


def parts(book: SegmentBook, sample: Sample, rules: Rules) -> dict[str, Part]:
    """Each part as a function of a range of the sample, to time."""
    profiles, sketches = sample.profiles, sample.sketches
    names = sorted({name for s in book.segments for name in s.condition.reads})
    conditions = [s.condition for s in book.segments]
    stored = stored_before(book, sample, rules)
    scores = [sketches.score_profile(p) for p in profiles]
    rfm = [s.fields() if s is not None else None for s in scores]
    loaded = [FieldValues(p, rules, r) for p, r in zip(profiles, rfm, strict=True)]
    for values in loaded:
        for name in names:
            values[name]
    results = [decide(book, p, rules, s) for p, s in zip(profiles, scores, strict=True)]
    slow = engine_only(book)

    def loop(lo: int, hi: int) -> None:
        for profile, _ in zip(profiles[lo:hi], stored[lo:hi], strict=True):
            str(profile.customer_id)

    def rfm_part(lo: int, hi: int) -> None:
        for profile in profiles[lo:hi]:
            sketches.score_profile(profile)

    def fields_part(lo: int, hi: int) -> None:
        for profile, r in zip(profiles[lo:hi], rfm[lo:hi], strict=True):
            values = FieldValues(profile, rules, r)
            for name in names:
                values[name]

    def conditions_part(lo: int, hi: int) -> None:
        for values in loaded[lo:hi]:
            for condition in conditions:
                condition.decide(values)

    def transitions_part(lo: int, hi: int) -> None:
        for profile, mine, result in zip(
            profiles[lo:hi], stored[lo:hi], results[lo:hi], strict=True
        ):
            transitions(
                str(profile.customer_id), mine, result.members, result.decided, profile.last_seen
            )

    def run(book: SegmentBook) -> Part:
        def total(lo: int, hi: int) -> None:
            for profile, mine in zip(profiles[lo:hi], stored[lo:hi], strict=True):
                result = decide(book, profile, rules, sketches.score_profile(profile))
                transitions(
                    str(profile.customer_id),
                    mine,
                    result.members,
                    result.decided,
                    profile.last_seen,
                )

        return total

    def tracker_path(lo: int, hi: int) -> None:
        for profile, mine in zip(profiles[lo:hi], stored[lo:hi], strict=True):
            score = _tracker_score(sketches, profile)
            record = profile_fields(profile, rules, score.fields() if score is not None else None)
            result = evaluate(book, record)
            transitions(
                str(profile.customer_id), mine, result.members, result.decided, profile.last_seen
            )

    return {
        "(loop)": loop,
        "rfm": rfm_part,
        "fields": fields_part,
        "conditions": conditions_part,
        "transitions": transitions_part,
        "total": run(book),
        "total, engine": run(slow),
        "tracker.py": tracker_path,
    }


def measure(
    rounds: dict[str, Part], profiles: list[Profile], repeat: int, chunk: int
) -> dict[str, list[float]]:
    """CPU microseconds per customer of each part, one value per repeat.

    With a ``chunk``, each chunk of customers is run once untimed and then timed: its
    profiles are in the caches (the best case). Without, the whole sample is timed at
    once and each profile is cold when first read (the worst case). A worker's
    profiles, just decoded and changed by the batch, lie in between.
    """
    n = len(profiles)
    step = chunk or n
    out: dict[str, list[float]] = {name: [] for name in rounds}
    for _ in range(repeat):
        for name, run in rounds.items():
            used = 0.0
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                if chunk:
                    run(lo, hi)
                started = time.process_time()
                run(lo, hi)
                used += time.process_time() - started
            out[name].append(used / n * 1e6)
    return out


def report(timings: dict[str, list[float]]) -> str:
    lines = [f"{'part':<14} {'median':>8} {'min':>8} {'max':>8}  (CPU us per changed customer)"]
    for name, values in timings.items():
        lines.append(
            f"{name:<14} {statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.segment_cost")
    parser.add_argument("--events", type=Path, help="JSON lines; default: simulate")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=int, help="apply at most this many events")
    parser.add_argument("--segments", type=Path, default=DEMO_BOOK)
    parser.add_argument("--stride", type=int, default=25, help="keep every n-th changed customer")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--chunk", type=int, default=0, help="time warm, this many at a time (0: all, cold)"
    )
    parser.add_argument("--profile", action="store_true", help="also run total under cProfile")
    args = parser.parse_args(argv)

    book = load(args.segments)
    rules = Rules()
    started = time.monotonic()
    events = raw_events(args.events, args.customers, args.days, args.seed)
    sample = build(events, args.stride, args.limit)
    n = len(sample.profiles)
    print(
        f"{sample.events} events -> {n} changed customers sampled "
        f"(1 in {args.stride}), {sample.sketches.customers} customers with orders; "
        f"built in {time.monotonic() - started:.0f} s; book {args.segments}",
        file=sys.stderr,
    )
    rounds = parts(book, sample, rules)
    gc.collect()
    gc.freeze()  # as the worker does: no gen-2 passes over the sample's heap
    print(report(measure(rounds, sample.profiles, args.repeat, args.chunk)))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(rounds["total"], 0, n)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
