"""Drift of a model's inputs and score (models/drift.py, models/histogram.py): the figures
held to oracles computed apart from the code, the windows and the pinned reference, exact
merges across shards and days, and each learner's rows (churn, recommender, lifetime
value) as the monitors read them."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.clv.lifetime import INPUTS, refit, scored_inputs
from cdpulse.models.drift import (
    DAY,
    MIN_EXAMPLES,
    DriftMonitor,
    DriftWindows,
    ks,
    psi,
)
from cdpulse.models.histogram import GAMMA, Histogram
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco.interactions import interactions
from cdpulse.models.reco.ranker import Ranker
from cdpulse.models.reco_stream import ItemEvent, learn_records
from tests.unit.test_model_cards import _summaries

WEEK_AND_MONTH = DriftWindows(7, 28, None)


def bucket(value: float) -> float:
    """The oracle's bucket of a value: its sign times GAMMA to the ceiling of its log."""
    if abs(value) < 1e-9:
        return 0.0
    return math.copysign(GAMMA ** math.ceil(math.log(abs(value)) / math.log(GAMMA)), value)


def oracle_psi(base: list[float], current: list[float]) -> float:
    """PSI by counting bucketed values: ten bins at the base's deciles, shares floored."""
    b = sorted(bucket(v) for v in base)
    c = [bucket(v) for v in current]
    edges = sorted({b[math.ceil(q / 10 * len(b)) - 1] for q in range(1, 10)})
    total = 0.0
    lower = -math.inf
    for upper in [*edges, math.inf]:
        r = sum(lower < v <= upper for v in b) / len(b)
        s = sum(lower < v <= upper for v in c) / len(c)
        r, s = max(r, 1e-4), max(s, 1e-4)
        total += (s - r) * math.log(s / r)
        lower = upper
    return total


def oracle_ks(base: list[float], current: list[float]) -> float:
    b = [bucket(v) for v in base]
    c = [bucket(v) for v in current]
    return max(
        abs(sum(x <= t for x in b) / len(b) - sum(x <= t for x in c) / len(c))
        for t in set(b) | set(c)
    )


values = st.lists(
    st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False),
        st.integers(-50, 50).map(float),
        st.sampled_from([0.0, 1.0, 2.5]),
    ),
    min_size=1,
    max_size=300,
)


@given(base=values, current=values)
def test_psi_and_ks_equal_counting_the_bucketed_values(
    base: list[float], current: list[float]
) -> None:
    b, c = Histogram(), Histogram()
    b.add(np.array(base))
    c.add(np.array(current))
    assert psi(b, c) == pytest.approx(oracle_psi(base, current), rel=1e-9, abs=1e-12)
    assert ks(b, c) == pytest.approx(oracle_ks(base, current), abs=1e-12)


@given(parts=st.lists(values, min_size=1, max_size=5), seed=st.integers(0, 1000))
def test_merging_is_exact_whatever_the_order(parts: list[list[float]], seed: int) -> None:
    whole = Histogram()
    whole.add(np.array([v for part in parts for v in part]))
    shuffled = list(parts)
    random.Random(seed).shuffle(shuffled)
    merged = Histogram()
    for part in shuffled:
        h = Histogram()
        h.add(np.array(part))
        merged.merge(h)
    assert merged.counts == whole.counts
    assert merged.n == len([v for part in parts for v in part])
    # every value shares its bucket only with values within the bucket's width
    for value in (v for part in parts for v in part):
        assert abs(bucket(value) - value) <= abs(value) * (GAMMA - 1) + 1e-9


def test_values_that_are_not_finite_are_not_counted() -> None:
    h = Histogram()
    h.add(np.array([1.0, math.nan, math.inf, -math.inf]))
    assert h.n == 1


def _rows(
    rng: random.Random, day: int, n: int, shift: float = 0.0
) -> list[tuple[int, list[float]]]:
    return [(day * DAY + i, [rng.gauss(shift, 1.0), rng.random(), rng.random()]) for i in range(n)]


def test_the_recent_week_against_the_month_before_and_only_the_moved_input_drifts() -> None:
    rng = random.Random(4)
    monitor = DriftMonitor(("moved", "kept"))
    kept: dict[str, list[float]] = {"recent": [], "reference": []}
    moved: dict[str, list[float]] = {"recent": [], "reference": []}
    for day in range(40):
        rows = _rows(rng, day, 60, shift=1.5 if day >= 33 else 0.0)
        monitor.observe(rows)
        span = "recent" if day >= 33 else "reference" if day >= 5 else None
        if span:  # days 5..32: the 28 before the last 7 (33..39)
            moved[span] += [r[1][0] for r in rows]
            kept[span] += [r[1][1] for r in rows]
    report = monitor.report(WEEK_AND_MONTH, threshold=0.25)
    assert report.window == (33 * DAY, 40 * DAY)
    assert report.reference == (5 * DAY, 33 * DAY) and not report.pinned
    (first, second) = report.features
    assert (first.current, first.reference) == (7 * 60, 28 * 60)
    assert first.psi == pytest.approx(oracle_psi(moved["reference"], moved["recent"]), abs=1e-6)
    assert second.psi == pytest.approx(oracle_psi(kept["reference"], kept["recent"]), abs=1e-6)
    assert (first.status, second.status, report.status) == ("drifted", "stable", "drifted")
    assert report.score is not None and report.score.status == "stable"
    assert report.as_of == 40 * DAY


def test_a_pinned_reference_is_kept_and_used() -> None:
    rng = random.Random(5)
    monitor = DriftMonitor(("x", "y"))
    pinned = DriftWindows(7, 28, (0, 10 * DAY))
    for day in range(90):
        monitor.observe(_rows(rng, day, 30, shift=0.0 if day < 10 else 2.0))
        monitor.prune(pinned)
    # days 10..54 fell out of the (sliding) reach; the pinned ten and the newest 35 stay
    assert sorted(monitor.days) == [*range(10), *range(55, 90)]
    report = monitor.report(pinned, threshold=0.25)
    assert report.pinned and report.reference == (0, 10 * DAY)
    assert report.features[0].status == "drifted"  # against the pinned days, not the month
    sliding = monitor.report(WEEK_AND_MONTH, threshold=0.25)
    assert sliding.features[0].status == "stable"
    monitor.prune(WEEK_AND_MONTH)  # unpinned: the old days go
    assert sorted(monitor.days) == list(range(55, 90))


def test_too_few_examples_leave_the_status_unknown_saying_why() -> None:
    rng = random.Random(6)
    monitor = DriftMonitor(("x", "y"))
    assert monitor.report(WEEK_AND_MONTH, 0.25).unknown == "no example observed yet"
    for day in range(35):
        monitor.observe(_rows(rng, day, 10 if day >= 28 else 50))
    report = monitor.report(WEEK_AND_MONTH, 0.25)
    assert report.status == "unknown"
    assert report.unknown == f"70 examples in the recent window; {MIN_EXAMPLES} needed"
    assert all(f.psi is None and f.status == "unknown" for f in report.features)


def test_shards_merged_give_the_report_of_one_monitor_fed_everything() -> None:
    rng = random.Random(7)
    rows = [row for day in range(40) for row in _rows(rng, day, 40, 0.3 * (day > 30))]
    whole = DriftMonitor(("a", "b"))
    whole.observe(rows)
    shards = [DriftMonitor(("a", "b")) for _ in range(3)]
    for i, row in enumerate(rows):
        shards[i % 3].observe([row])
    merged = DriftMonitor(("a", "b"))
    for shard in (DriftMonitor.from_bytes(s.to_bytes()) for s in shards):
        merged.merge(shard)
    assert merged.report(WEEK_AND_MONTH, 0.25) == whole.report(WEEK_AND_MONTH, 0.25)
    with pytest.raises(ValueError, match="different inputs"):
        merged.merge(DriftMonitor(("a",)))
    with pytest.raises(ValueError, match="3 values; 2 expected"):
        DriftMonitor(("a",)).observe([(0, [1.0, 2.0, 3.0])])


def test_rows_a_learner_gives_again_after_a_restart_are_counted_once() -> None:
    monitor = DriftMonitor(("x",))
    monitor.observe_learned([(5, 0, [1.0, 0.5]), (6, 0, [2.0, 0.5])])
    monitor.observe_learned([(6, 0, [2.0, 0.5]), (7, 0, [3.0, 0.5])])
    assert monitor.offset == 7 and monitor.days[0][0].n == 3


def _examples(n: int, seed: int) -> list[tuple[int, Example]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        features = [rng.gauss(0.0, 1.0) for _ in FEATURE_NAMES]
        label = int(rng.random() < 0.4)
        out.append((i, Example(f"C-{i}", i * DAY // 10, (i + 300) * DAY // 10, label, features)))
    return out


def test_the_churn_learner_gives_each_example_its_score_before_learning_it() -> None:
    learner = ChurnLearner.fresh()
    learner.learn(_examples(50, 1))
    before = copy.deepcopy(learner.model)
    batch = [(offset + 100, e) for offset, e in _examples(30, 2)]
    result = learner.learn(batch)
    expected = []
    for offset, example in batch:
        x = dict(zip(FEATURE_NAMES, example.features, strict=True))
        expected.append((offset, example.label_at, [*example.features, before.predict_proba(x)]))
        before.learn_one(x, example.label)
    assert result.scored == expected
    assert learner.learn(batch).scored == []  # re-delivered: skipped, not scored again


def test_the_ranker_scores_as_serving_does_before_each_example() -> None:
    rng = random.Random(3)
    recommender = Recommender()
    t = 1_000_000
    for step in range(300):
        customer, product = f"C-{rng.randrange(6)}", f"P-{rng.randrange(9)}"
        event = {
            "event_id": f"e{step}",
            "type": "product_viewed",
            "timestamp": t + step * 60_000,
            "customer_id": customer,
            "channel": "web",
            "properties": {"product_id": product, "category": f"c{product[-1]}", "price": 5.0},
        }
        # the oracle: a copy folds its ranker before each example, as serving would
        twin = copy.deepcopy(recommender)
        expected = []
        for example in twin.observe(customer, event):
            expected.append((example.x, twin.ranker.folded().scores([example.x])[0]))
            assert isinstance(twin.ranker, Ranker)
            twin.ranker.learn_one(example)
        got = recommender.learn_one(customer, event)
        assert [x for x, _ in got] == [x for x, _ in expected]
        for (_, score), (_, oracle) in zip(got, expected, strict=True):
            assert score == pytest.approx(oracle, rel=1e-9, abs=1e-9)
    assert recommender.ranker.learned > 0


def test_item_events_learned_give_rows_at_their_event_time() -> None:
    recommender = Recommender()
    records = []
    for i in range(40):
        event = {
            "event_id": f"e{i}",
            "type": "product_viewed",
            "timestamp": 5_000_000 + i * 1000,
            "customer_id": "C-1",
            "channel": "web",
            "properties": {"product_id": f"P-{i % 7}", "category": "c", "price": 5.0},
        }
        item = ItemEvent("hmac:c1", f"e{i}", 5_000_000 + i * 1000, interactions(event), Context())
        records.append((i, msgspec.json.encode(item)))
    learned = learn_records(recommender, records)
    assert learned.scored, "the ranker learned examples"
    assert {at for _, at, _ in learned.scored} <= {5_000_000 + i * 1000 for i in range(40)}
    assert all(len(values) == 8 for _, _, values in learned.scored)  # 7 features, score


def test_lifetime_value_rows_are_every_customer_inputs_and_expected_value() -> None:
    summaries = _summaries(200)
    snapshot = refit(summaries, 365 * DAY, None)
    assert snapshot is not None
    rows = scored_inputs(summaries, 365 * DAY, snapshot, 90.0)
    assert len(rows) == 200 and all(len(r) == len(INPUTS) + 1 for r in rows)
    x, t_x, T, m, value = rows[0]
    assert x == summaries[0].orders - 1
    expected = snapshot.model.predict(x, t_x, T, m, horizon=90.0).expected_value
    assert value == pytest.approx(float(expected))
    monitor = DriftMonitor(INPUTS)
    monitor.replace(365 * DAY, rows)
    monitor.replace(365 * DAY + 1000, rows[:50])  # a later refit the same day replaces it
    assert Counter(h.n for h in monitor.days[365]) == Counter({50: 5})
