"""``observe_many`` gives a histogram exactly what one ``observe`` per value gives."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from cdpulse.app.reporting import observe_many

BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


def _samples(histogram: Histogram) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _pair() -> tuple[Histogram, Histogram]:
    registry = CollectorRegistry()
    one = Histogram("one_by_one", "oracle", buckets=BUCKETS, registry=registry)
    bulk = Histogram("in_bulk", "under test", buckets=BUCKETS, registry=registry)
    return one, bulk


def _renamed(samples: dict[str, float], name: str) -> dict[str, float]:
    return {key.replace(name, "h"): value for key, value in samples.items()}


@given(st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False)))
def test_bulk_matches_one_observe_per_value(values: list[float]) -> None:
    one, bulk = _pair()
    for value in values:
        one.observe(value)
    observe_many(bulk, iter(values))
    assert _renamed(_samples(bulk), "in_bulk") == _renamed(_samples(one), "one_by_one")


def test_values_on_the_bounds_and_beyond_them() -> None:
    one, bulk = _pair()
    rng = random.Random(7)
    values = [*BUCKETS, 0.0, 20.0, float("inf")] + [rng.uniform(0, 12) for _ in range(500)]
    for value in values:
        one.observe(value)
    observe_many(bulk, values)
    assert _renamed(_samples(bulk), "in_bulk") == _renamed(_samples(one), "one_by_one")
    bucket = dict(_renamed(_samples(bulk), "in_bulk"))
    assert bucket["h_bucket[('le', '0.005')]"] == sum(v <= 0.005 for v in values)
