"""What the recommender's learner costs per item event, split by part.

The simulator's events become ``ItemEvent`` records as the profile worker makes them
(profiles kept with the real rules, consent checked, the customer's pseudonym, the
context from just before the event) and are encoded once. The learner's loop is then
timed over those bytes: decode a record, then ``Recommender.learn_one``.

Two passes per repeat, each on a fresh recommender:

* ``total``: the plain loop, CPU time of this process (``time.process_time``), which a
  machine busy with other work does not inflate;
* ``parts``: the same loop with each part wrapped in a CPU timer: decoding, reading the
  event's products, example generation, the co-visitation and trending updates, the
  ranker's learning; ``rest`` is the remainder (shopper bookkeeping). Reading the clock
  costs about a microsecond per timed call; that cost, measured on a no-op, is taken
  out of each part and of the remainder.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.reco import Recommender, covisitation, trending
from cdpulse.models.reco import recommender as recommender_module
from cdpulse.models.reco.ranker import Ranker
from cdpulse.models.reco_stream import ITEM_TYPES, ItemEvent
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile

# (part, owner, attribute): the functions timed in the ``parts`` pass, where they exist
PARTS: tuple[tuple[str, Any, str], ...] = (
    ("decode", ItemEvent, "from_json"),
    ("interactions", recommender_module, "interactions"),
    ("examples", Recommender, "_examples"),
    ("covisitation", covisitation, "learn"),
    ("trending", trending, "learn"),
    ("ranker", Ranker, "learn_one"),
)


def item_records(lines: Iterable[bytes], limit: int | None = None) -> list[bytes]:
    """The ``cdp.reco-events`` records a profile worker makes from these event lines.

    Anonymous ids resolve to their customer once an event names both, as in
    ``reco_eval``; only customers who allow analytics and personalization are forwarded.
    """
    rules = Rules()
    pseudonyms = rules.traits.pseudonymizer
    profiles: dict[str, Profile] = {}
    aliases: dict[str, str] = {}
    now = datetime.now(UTC)
    out: list[bytes] = []
    for line in lines:
        if limit is not None and len(out) >= limit:
            break
        raw = json.loads(line)
        event = validate(raw, now=now)
        if isinstance(event, Rejection):
            continue
        if event.customer_id is not None and event.anonymous_id is not None:
            aliases.setdefault(event.anonymous_id, event.customer_id)
        key = event.customer_id or aliases.get(event.key, event.key)
        profile = profiles.setdefault(key, new_profile(key))
        if event.type in ITEM_TYPES and allows(profile, "analytics") and allows(
            profile, "personalization"
        ):
            document = pseudonyms.event(raw, key)
            out.append(ItemEvent.of(pseudonyms.of_id(key), document, profile).to_json())
        apply(profile, event, rules)
    return out


def learn(records: Sequence[bytes]) -> Recommender:
    """The learner's loop over ``records``, on a fresh recommender."""
    recommender = Recommender()
    for raw in records:
        item = ItemEvent.from_json(raw)
        recommender.learn_one(item.customer_id, item.event, item.context)
    return recommender


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
    totals: list[float] = []
    parts: dict[str, list[float]] = defaultdict(list)
    overhead = timer_cost()
    for _ in range(repeat):
        start = time.process_time()
        learn(records)
        totals.append((time.process_time() - start) / len(records) * 1e6)
        seconds: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        start = time.process_time()
        with timed_parts(seconds, calls):
            learn(records)
        whole = time.process_time() - start - overhead * sum(calls.values())
        for part in seconds:
            # half the two reads fall inside the timed span, half outside it
            seconds[part] -= overhead / 2 * calls[part]
        seconds["rest"] = whole - sum(seconds.values())
        for part, value in seconds.items():
            parts[part].append(value / len(records) * 1e6)
    return {
        "item_events": len(records),
        "total_us": {
            "median": statistics.median(totals),
            "min": min(totals),
            "max": max(totals),
            "runs": totals,
        },
        "parts_us": {part: statistics.median(values) for part, values in parts.items()},
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
    total = result["total_us"]
    print(f"{result['item_events']} item events; learner CPU per item event (µs):")
    print(
        f"  total {total['median']:.1f} (min {total['min']:.1f}, max {total['max']:.1f}, "
        f"{len(total['runs'])} runs)"
    )
    for part, value in result["parts_us"].items():
        print(f"  {part:14}{value:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
