"""What the recommender's learner costs per item event, split by part.

The simulator's events become ``cdp.reco-events`` records as the profile worker makes
them (``reco_eval.item_events``: profiles kept with the real rules, consent checked,
customers by pseudonym, the context from just before each event), encoded once. The
learner's loop is then timed over those bytes, in batches as a learner takes them:
``reco_stream.learn_records`` (decode, ``Recommender.learn_one``), then
``reco_stream.due_lists`` (the recommendation lists due, throttled per customer).

Two passes per repeat, each on a fresh recommender:

* ``total``: the plain loop, CPU time of this process (``time.process_time``), which a
  machine busy with other work does not inflate; learning and lists apart;
* ``parts``: the same loop with each part wrapped in a CPU timer: decoding, example
  generation, the co-visitation and trending updates, the ranker's learning; ``rest``
  is the remainder of learning (reading the records' products, shopper bookkeeping).
  Reading the clock costs about a microsecond per timed call; that cost, measured on a
  no-op, is taken out of each part and of the remainder.

Run: ``python -m cdpulse.bench.reco_cost --input /tmp/shop.jsonl`` (from
``cdpulse simulate --customers 10000 --days 30 --seed 1 --out /tmp/shop.jsonl``).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cdpulse.models import reco_stream
from cdpulse.models.reco import Recommender, covisitation, trending
from cdpulse.models.reco import recommender as recommender_module
from cdpulse.models.reco.ranker import Ranker
from cdpulse.models.reco_eval import item_events
from cdpulse.models.reco_stream import ListThrottle, RecoSnapshot, due_lists, learn_records
from cdpulse.profile.rules import Rules

BATCH = 2_000  # records a learner takes at a time (the worker's batch size)
LIST_INTERVAL_MS = 30_000  # CDPULSE_RECO_LIST_INTERVAL_SECONDS' default

# (part, owner, attribute): the functions timed in the ``parts`` pass, where they exist
PARTS: tuple[tuple[str, Any, str], ...] = (
    ("decode", reco_stream, "read_record"),
    ("examples", recommender_module, "examples"),
    ("covisitation", covisitation, "learn"),
    ("trending", trending, "learn"),
    ("ranker", Ranker, "learn_one"),
)


def item_records(lines: Iterable[bytes], limit: int | None = None) -> list[bytes]:
    """The ``cdp.reco-events`` records a profile worker makes from these event lines."""
    pseudonyms = Rules().traits.pseudonymizer
    out: list[bytes] = []
    for item in item_events(
        (json.loads(line) for line in lines), consent=True, pseudonyms=pseudonyms
    ):
        if limit is not None and len(out) >= limit:
            break
        out.append(item.to_json())
    return out


def learn(records: Sequence[bytes], lists: bool) -> tuple[float, float, int]:
    """The learner's loop over ``records`` on a fresh recommender: CPU seconds learning
    and making lists, and the number of lists."""
    recommender = Recommender()
    throttle = ListThrottle(LIST_INTERVAL_MS)
    learning = listing = 0.0
    published = 0
    clock = time.process_time
    for start in range(0, len(records), BATCH):
        batch = list(enumerate(records[start : start + BATCH], start))
        t = clock()
        learned = learn_records(recommender, batch)
        learning += clock() - t
        if lists:
            t = clock()
            served = RecoSnapshot(1, Recommender.merge([recommender]), start)
            published += len(due_lists(served, learned.items, throttle, lambda p: p))
            listing += clock() - t
    return learning, listing, published


def _timed(
    part: str, function: Callable[..., Any], seconds: dict[str, float], calls: dict[str, int]
) -> Callable[..., Any]:
    clock = time.process_time

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[part] += clock() - start
            calls[part] += 1

    return timed


@contextmanager
def timed_parts(seconds: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """While inside, each of ``PARTS`` that exists adds its CPU time to ``seconds``."""
    saved: list[tuple[Any, str, Any]] = []
    for part, owner, name in PARTS:
        raw = vars(owner).get(name)
        if raw is None:
            continue
        saved.append((owner, name, raw))
        if isinstance(raw, classmethod):
            setattr(owner, name, classmethod(_timed(part, raw.__func__, seconds, calls)))
        else:
            setattr(owner, name, _timed(part, raw, seconds, calls))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def timer_cost(calls: int = 200_000) -> float:
    """CPU seconds a timer adds to one call: a wrapped no-op against a plain one."""
    seconds: dict[str, float] = defaultdict(float)
    counted: dict[str, int] = defaultdict(int)

    def noop() -> None:
        return None

    wrapped = _timed("noop", noop, seconds, counted)
    clock = time.process_time
    start = clock()
    for _ in range(calls):
        noop()
    plain = clock() - start
    start = clock()
    for _ in range(calls):
        wrapped()
    return max(0.0, (clock() - start - plain) / calls)


def measure(records: Sequence[bytes], repeat: int) -> dict[str, Any]:
    """µs per item event: the plain loop's CPU time per repeat, and the parts' median."""
    learning: list[float] = []
    listing: list[float] = []
    parts: dict[str, list[float]] = defaultdict(list)
    lists = 0
    overhead = timer_cost()
    n = len(records)
    for _ in range(repeat):
        learned, listed, lists = learn(records, lists=True)
        learning.append(learned / n * 1e6)
        listing.append(listed / n * 1e6)
        seconds: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        with timed_parts(seconds, calls):
            learned, _, _ = learn(records, lists=False)
        whole = learned - overhead * sum(calls.values())
        for part in seconds:
            # about half of a timer's two clock reads falls inside the timed span
            seconds[part] -= overhead / 2 * calls[part]
        seconds["rest"] = whole - sum(seconds.values())
        for part, value in seconds.items():
            parts[part].append(value / n * 1e6)
    return {
        "item_events": n,
        "learn_us": _spread(learning),
        "lists_us": _spread(listing),
        "lists_per_item_event": lists / n,
        "parts_us": {part: statistics.median(values) for part, values in parts.items()},
    }


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdpulse.bench.reco_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--input", type=Path, default=Path("/tmp/shop.jsonl"))
    parser.add_argument("--limit", type=int, default=None, help="item events at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with args.input.open("rb") as lines:
        records = item_records(lines, args.limit)
    result = measure(records, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['item_events']} item events; learner CPU per item event (µs):")
    for name in ("learn_us", "lists_us"):
        spread = result[name]
        print(
            f"  {name[:-3]:14}{spread['median']:8.1f}  (min {spread['min']:.1f}, "
            f"max {spread['max']:.1f}, {len(spread['runs'])} runs)"
        )
    print(f"  lists per item event: {result['lists_per_item_event']:.3f}")
    print("learning, by part (µs per item event, median):")
    for part, value in result["parts_us"].items():
        print(f"  {part:14}{value:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
