"""Churn: features, delayed labels in event time, the learner, scoring with reasons."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from cdpulse.contract.partitions import partition_of
from cdpulse.models.churn.features import FEATURE_NAMES, churn_features, describe
from cdpulse.models.churn.labels import ChurnLabeler, Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.churn.model import ChurnModel
from cdpulse.pipeline.replay import replay_churn
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop

H = 30 * DAY
LABELER = ChurnLabeler(horizon=H, interval=DAY, lateness=0)


def active_on(*days: int) -> Profile:
    profile = Profile(id="C", churn_first_seen=days[0] * DAY)
    for day in days:
        profile.churn_days[day * DAY] = [1, 0, 0.0]
    return profile


def decide(
    profile: Profile, watermark_day: float, labeler: ChurnLabeler = LABELER
) -> tuple[list[tuple[int, int]], int | None]:
    examples, due = labeler.decide(profile, int(watermark_day * DAY), lambda day: [float(day)])
    return [(e.snapshot_at // DAY, e.label) for e in examples], due


def test_days_followed_by_a_return_within_the_horizon_are_labelled_zero() -> None:
    profile = active_on(10, 25)
    labelled, due = decide(profile, 26)  # day 25 complete: days 10..24 are decided
    assert labelled == [(d, 0) for d in range(10, 25)]
    assert due == 25 * DAY + DAY + H  # day 25 waits for a return or the horizon
    assert profile.churn_labelled_through == 24 * DAY


def test_the_horizon_expires_in_event_time_with_no_further_event() -> None:
    profile = active_on(0)
    assert decide(profile, 30.9) == ([], 31 * DAY)
    labelled, due = decide(profile, 31)
    assert labelled == [(0, 1)] and due == 32 * DAY
    labelled, due = decide(profile, 100)
    assert labelled == [(d, 1) for d in range(1, 31)]  # every day up to the horizon
    assert due is None  # churned: nothing more until the customer comes back


def test_labels_wait_for_the_watermark_to_pass_the_day_they_read() -> None:
    profile = active_on(3, 4)
    labelled, due = decide(profile, 4.5)  # day 4 not complete: day 3 undecided
    assert labelled == [] and due == 5 * DAY


def test_the_same_days_are_labelled_whatever_the_order_of_decisions() -> None:
    once = active_on(1, 5, 50, 52)
    step = active_on(1, 5, 50, 52)
    all_at_once, _ = decide(once, 200)
    piecewise: list[tuple[int, int]] = []
    for watermark in range(0, 200, 7):
        found, _ = decide(step, watermark)
        piecewise += found
    assert piecewise == all_at_once
    # day 19 is the last one more than 30 days before the return on day 50
    assert (19, 1) in all_at_once and (20, 0) in all_at_once and (35, 0) in all_at_once
    assert not [d for d, _ in all_at_once if 35 < d < 50]  # churned days: no snapshots


def test_examples_round_trip_through_json() -> None:
    example = Example("C", 1, 2, 1, [0.5] * len(FEATURE_NAMES))
    assert Example.from_json(example.to_json()) == example


def test_features_read_the_day_buckets_as_of_the_end_of_a_day() -> None:
    profile = active_on(0, 10)
    profile.churn_days[10 * DAY] = [2, 1, 30.0]  # an order on day 10
    x = churn_features(profile, 40 * DAY)
    assert x["days_since_last_visit"] == 30.0
    assert x["days_since_last_order"] == 30.0
    assert x["tenure_days"] == 41.0
    assert x["events_30d"] == 0 and x["events_7d"] == 0
    assert describe("days_since_last_order", x) == "no order for 30 days"
    # as of day 5, the later order does not exist yet
    early = churn_features(profile, 5 * DAY)
    assert early["orders_30d"] == 0 and early["days_since_last_visit"] == 5.0
    assert set(x) == set(FEATURE_NAMES)


def test_the_learner_skips_redelivered_examples_and_measures_before_learning() -> None:
    learner = ChurnLearner.fresh()
    churned = Example("A", 0, H, 1, [40.0] + [0.0] * (len(FEATURE_NAMES) - 1))
    active = Example("B", 0, DAY, 0, [1.0] + [0.0] * (len(FEATURE_NAMES) - 1))
    pairs = [(i, churned if i % 2 else active) for i in range(400)]
    assert learner.learn(pairs).learned == 400
    again = learner.learn(pairs[:100])
    assert (again.learned, again.skipped) == (0, 100)
    assert learner.quality.examples == 400
    snapshot = learner.snapshot()
    x = dict(zip(FEATURE_NAMES, churned.features, strict=True))
    assert snapshot.version == 1 and snapshot.model.predict_proba(x) > 0.9


def test_reasons_are_the_largest_contributions_in_words() -> None:
    model = ChurnModel.create()
    quiet = {n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 50.0}
    busy = {n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 1.0, "events_30d": 40.0}
    for _ in range(300):
        model.learn_one(quiet, 1)
        model.learn_one(busy, 0)
    reasons = model.reasons(quiet)
    assert len(reasons) == 3
    assert "no visit for 50 days" in reasons


def test_the_replayed_model_beats_recency_alone_on_the_simulator() -> None:
    events = list(Shop(customers=200, days=75, seed=21).events())
    lines = [json.dumps(e).encode() for e in events]
    result = asyncio.run(replay_churn(lines, Settings(), partition_of))
    assert result.model["examples"] == result.baseline["examples"] > 1000
    assert result.model["roc_auc"] > result.baseline["roc_auc"]
    scored = [s for s in result.scores.values() if s is not None]
    assert scored and all(0.0 <= s <= 1.0 for s in scored)


def test_labels_come_in_decision_order_however_few_due_profiles_a_batch_may_poll() -> None:
    """Churn labels bunch: every customer quiet since one day is labelled at one moment.
    A batch polls only ``due_per_batch`` of them per schedule; the rest, and the touched
    profiles due after them, wait for the next batch, so that the training topic holds
    the examples in (decision time, customer) order whatever the batches and the limit.
    """
    events = list(Shop(customers=80, days=60, seed=8).events())
    lines = [json.dumps(e).encode() for e in events]

    def examples(due_per_batch: int, batch_size: int, per_message: float = 0.0) -> list[Example]:
        settings = Settings(due_per_batch=due_per_batch, due_per_message=per_message)
        replay = replay_churn(lines, settings, partition_of, batch_size=batch_size)
        return asyncio.run(replay).examples

    unbounded = examples(100_000, 500)
    assert unbounded == sorted(unbounded, key=lambda e: e.order)
    # Many are decided at the very same moment: the limit of 2 is hit again and again.
    moments = Counter(e.label_at for e in unbounded)
    assert len(unbounded) > 500 and max(moments.values()) > 2
    for due_per_batch, batch_size in ((2, 500), (2, 3_000), (5, 97), (1, 1)):
        assert examples(due_per_batch, batch_size) == unbounded, (due_per_batch, batch_size)
    # A limit that grows with the batch (3,000 messages: 9 per shard and schedule; a
    # batch of 1 keeps the floor of 2): the same examples in the same order.
    for batch_size in (3_000, 1):
        assert examples(2, batch_size, per_message=0.003) == unbounded, batch_size


def test_the_compiled_scorer_agrees_with_the_model() -> None:
    import random

    from cdpulse.models.churn.features import FEATURE_NAMES
    from cdpulse.models.churn.model import ChurnModel, LinearScorer

    rng = random.Random(5)
    model = ChurnModel.create("logistic")
    for _ in range(400):
        x = {n: rng.random() * rng.choice((1, 10, 60)) for n in FEATURE_NAMES}
        model.learn_one(x, int(x["days_since_last_visit"] > 20))
    x = {n: 0.0 for n in FEATURE_NAMES}
    x["events_7d"] = 3.0  # a constant feature keeps its variance 0 for a while: covered too
    scorer = LinearScorer.of(model)
    assert scorer is not None
    for _ in range(300):
        x = {n: rng.random() * rng.choice((1, 10, 60)) for n in FEATURE_NAMES}
        risk, reasons = scorer.score(x)
        assert abs(risk - model.predict_proba(x)) < 1e-12
        assert reasons == model.reasons(x)
    assert LinearScorer.of(ChurnModel.create("forest")) is None
