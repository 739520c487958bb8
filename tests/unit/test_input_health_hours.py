"""The input-health judgement walks only the hours that saw an input (``monitors/health.py``):
the same flags as walking every hour from the first, and one event dated 1970 no longer
makes the worker judge half a million empty hours."""

from __future__ import annotations

import copy
import random

from cdpulse.monitors.health import HOUR, GateSpec, InputHealth


def every_hour(health: InputHealth, through: int) -> dict[str, dict[int, str]]:
    """The judgement as it was: every hour from the first one seen through ``through``."""
    first = min(h for _, h in health.volume) if health.judged is None else health.judged + 1
    new: dict[str, dict[int, str]] = {}
    for hour in range(first, through + 1):
        for model, spec in health.specs.items():
            reason = health._verdict(model, spec, hour)
            if reason is not None:
                health.flags.setdefault(model, {})[hour] = reason
                new.setdefault(model, {})[hour] = reason
    return new


def sparse(seed: int) -> InputHealth:
    """A shop over ~20 days with gaps: quiet hours, stalled streams, revenue sent in
    cents now and then, a field sent empty for a while."""
    rng = random.Random(seed)
    health = InputHealth(
        {
            "churn": GateSpec(min_events=3, fields=["product_viewed.product_id"]),
            "clv": GateSpec(min_events=2, streams=["transactions"]),
        }
    )
    for hour in range(500):
        if rng.random() < 0.3:
            continue  # a quiet hour
        cents = rng.random() < 0.05
        empty = 200 <= hour < 210
        for _ in range(rng.randint(1, 12)):
            at = hour * HOUR + rng.randrange(HOUR)
            if rng.random() < 0.6:
                product = None if empty else "p1"
                health.observe("product_viewed", at, {"product_id": product})
            if rng.random() < 0.4 and not (300 <= hour < 305):
                revenue = rng.uniform(10, 90) * (100 if cents else 1)
                health.observe("order_completed", at, {"revenue": revenue})
    return health


def test_the_same_flags_as_walking_every_hour() -> None:
    flagged = 0
    for seed in range(12):
        health = sparse(seed)
        reference = copy.deepcopy(health)
        for through in (150, 320, 499):
            assert health.judge(through) == every_hour(reference, through)
            reference.judged = through
            reference._prune(through - 25)
            assert health.flags == reference.flags
        flagged += sum(len(hours) for hours in health.flags.values())
    assert flagged  # the shops above do break their inputs


def test_an_event_dated_1970_judges_only_the_hours_with_inputs() -> None:
    health = InputHealth({"churn": GateSpec(min_events=1)})
    now = 493_000  # hours since 1970: late 2026
    health.observe("order_completed", 0, {"revenue": 5.0})
    for hour in range(now - 48, now + 1):
        health.observe("order_completed", hour * HOUR, {"revenue": 5.0})
    judged: list[int] = []
    verdict = health._verdict

    def counting(model: str, spec: GateSpec, hour: int) -> str | None:
        judged.append(hour)
        return verdict(model, spec, hour)

    health._verdict = counting  # type: ignore[method-assign]
    health.judge(now)
    assert judged == [0, *range(now - 48, now + 1)]
    assert health.judged == now
