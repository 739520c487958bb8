"""Churn: features, delayed labels in event time, the learner, scoring with reasons."""

from __future__ import annotations

import asyncio
import json

from cdpulse.models.churn import ChurnModel
from cdpulse.models.evaluate import replay_churn
from cdpulse.models.features import FEATURE_NAMES, churn_features, describe
from cdpulse.models.labels import ChurnLabeler, Example
from cdpulse.models.learner import ChurnLearner
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop

H = 30 * DAY


def test_activity_within_the_horizon_labels_the_snapshot_zero() -> None:
    labeler = ChurnLabeler(horizon=H, interval=DAY)
    profile = Profile(id="C")
    assert labeler.on_activity(profile, 10 * DAY, lambda: [1.0]) == []
    assert profile.churn_pending_at == 10 * DAY
    # same day: no new snapshot, no label
    assert labeler.on_activity(profile, 10 * DAY + 5, lambda: [2.0]) == []
    [example] = labeler.on_activity(profile, 39 * DAY, lambda: [3.0])
    assert (example.label, example.snapshot_at, example.label_at) == (0, 10 * DAY, 39 * DAY)
    assert example.features == [1.0]
    assert profile.churn_pending_at == 39 * DAY  # a new snapshot waits now


def test_the_horizon_expires_in_event_time_even_with_no_further_event() -> None:
    labeler = ChurnLabeler(horizon=H, interval=DAY)
    profile = Profile(id="C")
    labeler.on_activity(profile, 0, lambda: [1.0])
    assert labeler.expire(profile, watermark=H - 1) is None
    example = labeler.expire(profile, watermark=H)
    assert example is not None and (example.label, example.label_at) == (1, H)
    assert profile.churn_pending_at is None
    assert labeler.expire(profile, watermark=10 * H) is None  # labelled once


def test_a_return_after_the_horizon_labels_churned_at_the_horizon() -> None:
    labeler = ChurnLabeler(horizon=H, interval=DAY)
    profile = Profile(id="C")
    labeler.on_activity(profile, 0, lambda: [1.0])
    [example] = labeler.on_activity(profile, H + 5 * DAY, lambda: [2.0])
    assert (example.label, example.label_at) == (1, H)


def test_examples_round_trip_through_json() -> None:
    example = Example("C", 1, 2, 1, [0.5] * len(FEATURE_NAMES))
    assert Example.from_json(example.to_json()) == example


def test_features_come_from_the_profile_at_event_time() -> None:
    profile = Profile(id="C", first_seen=0, last_seen=10 * DAY, events=3, orders=1)
    profile.last_order_at = 5 * DAY
    x = churn_features(profile, as_of=40 * DAY)
    assert x["days_since_last_visit"] == 30.0
    assert x["days_since_last_order"] == 35.0
    assert x["tenure_days"] == 40.0
    assert describe("days_since_last_order", x) == "no order for 35 days"
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
    quiet = {n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 50.0, "events_30d": 0.0}
    busy = {n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 1.0, "events_30d": 40.0}
    for _ in range(300):
        model.learn_one(quiet, 1)
        model.learn_one(busy, 0)
    reasons = model.reasons(quiet)
    assert len(reasons) == 3
    assert reasons[0] in ("no visit for 50 days", "0 events in 30 days")


def test_the_replayed_model_beats_recency_alone_on_the_simulator() -> None:
    events = list(Shop(customers=200, days=75, seed=21).events())
    lines = [json.dumps(e).encode() for e in events]
    result = asyncio.run(replay_churn(lines, Settings()))
    assert result.model["examples"] == result.baseline["examples"] > 1000
    assert result.model["roc_auc"] > result.baseline["roc_auc"]
    scored = [s for s in result.scores.values() if s is not None]
    assert scored and all(0.0 <= s <= 1.0 for s in scored)
