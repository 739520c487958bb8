"""A model's health (issue 14, gating): ok, degraded with reasons, or unknown until defined."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import fields, replace

import numpy as np
from prometheus_client import REGISTRY

from cdpulse.app.learner import _export_health
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.churn.scoring import churn_view, health_of, score
from cdpulse.models.drift import DriftMonitor, DriftWindows, psi, unknown_report
from cdpulse.models.health import NO_MODEL, NOT_ASSESSED, HealthPolicy, ModelHealth, assess
from cdpulse.models.histogram import Histogram
from cdpulse.models.quality import ModelQuality
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings

NO_DRIFT = unknown_report("no example observed yet")
WINDOWS = DriftWindows(7, 14, None)
RECENCY = FEATURE_NAMES.index("days_since_last_visit")
RECENCY_NAME = FEATURE_NAMES[RECENCY]
ACTIVITY = FEATURE_NAMES.index("events_7d")


def pairwise_auc(labels: list[int], scores: list[float]) -> float:
    """ROC AUC by its definition: the share of (positive, negative) pairs ranked right."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    neg = [s for y, s in zip(labels, scores, strict=True) if not y]
    right = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return right / (len(pos) * len(neg))


def measured(n: int, seed: int, skill: float) -> tuple[ModelQuality, float]:
    """A quality fed ``n`` random predictions that lean towards the label by ``skill``,
    and their AUC computed apart."""
    rng = random.Random(seed)
    quality, labels, scores = ModelQuality(), [], []
    for _ in range(n):
        y = rng.random() < 0.3
        p = min(1.0, max(0.0, rng.random() * (1 - skill) + (skill if y else 0.0)))
        p = round(p, 3)
        quality.update(int(y), p)
        labels.append(int(y))
        scores.append(p)
    return quality, pairwise_auc(labels, scores)


def test_live_auc_below_the_floor_degrades_and_above_it_is_ok() -> None:
    quality, auc = measured(500, seed=3, skill=0.15)
    below = HealthPolicy(auc_floor=round(auc + 0.05, 2), min_examples=100)
    verdict = assess(quality, NO_DRIFT, below)
    assert verdict.status == "degraded"
    assert verdict.reasons == (f"live AUC {auc:.2f} below the floor {below.auc_floor:.2f}",)
    above = HealthPolicy(auc_floor=round(auc - 0.05, 2), min_examples=100)
    assert assess(quality, NO_DRIFT, above).to_json() == {"status": "ok", "reasons": []}


def test_quality_is_unknown_until_enough_labels_of_both_classes() -> None:
    quality, _ = measured(50, seed=4, skill=0.0)  # a poor model, but too few labels to say
    policy = HealthPolicy(auc_floor=0.99, min_examples=100)
    verdict = assess(quality, NO_DRIFT, policy)
    assert verdict.status == "unknown"
    assert verdict.reasons == ("live quality not defined yet: 50 labels; 100 needed",)
    one_class = ModelQuality()
    for _ in range(300):
        one_class.update(0, 0.2)
    verdict = assess(one_class, NO_DRIFT, policy)
    assert verdict.status == "unknown"
    assert verdict.reasons == (f"live quality not defined yet: {one_class.unknown('roc_auc')}",)


def rows(day: int, n: int, rng: random.Random, recency: tuple[float, float]) -> list[Example]:
    """``n`` examples labelled on ``day``: churners are inactive, recency drawn from
    ``recency`` whatever the label."""
    out = []
    for i in range(n):
        y = i % 3 == 0
        x = [rng.uniform(0, 3) for _ in FEATURE_NAMES]
        x[RECENCY] = round(rng.uniform(*recency), 1)
        x[ACTIVITY] = 0.0 if y else float(rng.randint(3, 9))
        out.append(Example(f"c{day}-{i}", day * DAY, day * DAY + 1, int(y), x))
    return out


def history(shift_from: int | None, days: int = 21, per_day: int = 40) -> list[Example]:
    rng = random.Random(11)
    out = []
    for day in range(days):
        moved = shift_from is not None and day >= shift_from
        out += rows(day, per_day, rng, (30.0, 40.0) if moved else (0.0, 10.0))
    return out


def test_an_input_that_drifted_degrades_the_learners_snapshot() -> None:
    examples = history(shift_from=14)
    policy = HealthPolicy(auc_floor=0.6, min_examples=100, windows=WINDOWS)
    learner = ChurnLearner.fresh(policy=policy)
    learner.learn(list(enumerate(examples)))
    health = learner.snapshot().health
    # The oracle: the recency histograms of the two windows built from the examples alone.
    base, current = Histogram(), Histogram()
    for e in examples:
        into = current if e.label_at >= 14 * DAY else base
        into.add(np.array([e.features[RECENCY]]))
    expected = psi(base, current)
    assert expected >= policy.psi_threshold
    assert health.status == "degraded"
    assert health.reasons == (
        f"input days_since_last_visit drifted (PSI {expected:.2f} >= {policy.psi_threshold:.2f})",
    )
    # An input the operator does not judge (tenure by default) is still reported only.
    ignoring = ChurnLearner.fresh(policy=replace(policy, ignored=frozenset({RECENCY_NAME})))
    ignoring.learn(list(enumerate(examples)))
    assert ignoring.snapshot().health.to_json() == {"status": "ok", "reasons": []}
    steady = ChurnLearner.fresh(policy=policy)
    steady.learn(list(enumerate(history(shift_from=None))))
    assert steady.quality.auc >= policy.auc_floor
    assert steady.snapshot().health.to_json() == {"status": "ok", "reasons": []}


def test_the_verdict_depends_on_the_examples_not_on_batches_or_restarts() -> None:
    examples = list(enumerate(history(shift_from=14)))
    policy = HealthPolicy(min_examples=100, windows=WINDOWS)
    whole = ChurnLearner.fresh(policy=policy)
    whole.learn(examples)
    expected = whole.snapshot()
    learner = ChurnLearner.fresh(policy=policy)
    published = None
    for start in range(0, len(examples), 37):
        learner.learn(examples[start : start + 37])
        published = learner.snapshot()
        if start == 370:  # a restart: the next learner resumes from the published bytes
            learner = ChurnLearner(Snapshot.loads(published.dumps()), policy)
            learner.learn(examples[:start])  # re-delivered: skipped
    assert published is not None
    assert published.health == expected.health
    assert published.inputs is not None and expected.inputs is not None
    days = DriftMonitor.from_bytes(published.inputs).days
    assert days == DriftMonitor.from_bytes(expected.inputs).days


def test_a_snapshot_pickled_before_health_loads_as_not_assessed() -> None:
    learner = ChurnLearner.fresh()
    learner.learn(list(enumerate(history(None, days=2))))
    current = learner.snapshot()
    # What the older class pickled: its first four fields only.
    old = Snapshot.__new__(Snapshot)
    old.__setstate__([getattr(current, f.name) for f in fields(Snapshot)][:4])
    old = pickle.loads(pickle.dumps(old))
    assert old.health is None and old.inputs is None and old.version == current.version
    assert health_of(old) == NOT_ASSESSED
    resumed = ChurnLearner(old)
    resumed.learn([(10_000, history(None, days=1)[0])])
    assert resumed.snapshot().health is not None


def test_a_score_carries_its_snapshots_health_into_the_profile_document() -> None:
    examples = history(shift_from=14)
    policy = HealthPolicy(min_examples=100, windows=WINDOWS)
    learner = ChurnLearner.fresh(policy=policy)
    learner.learn(list(enumerate(examples)))
    degraded = learner.snapshot()
    profile = Profile(id="c1", churn_days={0: [3.0, 0.0, 0.0]}, churn_first_seen=0)
    score(profile, degraded, 20 * DAY)
    assert profile.churn_version == degraded.version
    assert profile.churn_degraded == list(degraded.health.reasons)
    view = churn_view(profile, degraded, 20 * DAY)
    assert view["quality"] == {"status": "degraded", "reasons": list(degraded.health.reasons)}
    assert view["at_last_event"]["degraded"] == list(degraded.health.reasons)
    assert churn_view(profile, None, 20 * DAY)["quality"]["status"] == "unknown"
    # An input the operator does not judge (tenure by default) is still reported only.
    ignoring = ChurnLearner.fresh(policy=replace(policy, ignored=frozenset({RECENCY_NAME})))
    ignoring.learn(list(enumerate(examples)))
    assert ignoring.snapshot().health.to_json() == {"status": "ok", "reasons": []}
    steady = ChurnLearner.fresh(policy=policy)
    steady.learn(list(enumerate(history(shift_from=None))))
    score(profile, steady.snapshot(), 20 * DAY)
    assert profile.churn_degraded == []


def test_the_learner_exports_health_nan_while_unknown() -> None:
    def exported() -> tuple[float | None, float | None]:
        value = REGISTRY.get_sample_value("cdpulse_model_health", {"model": "churn"})
        labels = {"model": "churn", "metric": "health"}
        return value, REGISTRY.get_sample_value("cdpulse_model_quality_defined", labels)

    _export_health("churn", ModelHealth("degraded", ("input x drifted",)))
    assert exported() == (1.0, 1.0)
    _export_health("churn", ModelHealth("ok"))
    assert exported() == (0.0, 1.0)
    _export_health("churn", NO_MODEL)
    value, defined = exported()
    assert value is not None and math.isnan(value) and defined == 0.0


def test_the_policy_reads_the_settings() -> None:
    settings = Settings(
        model_auc_floor=0.7,
        model_health_min_examples=50,
        drift_psi_threshold=0.3,
        drift_window_days=3,
        drift_reference_days=9,
        drift_reference=("2026-11-01T00:00:00Z", "2026-11-29T00:00:00Z"),
    )
    policy = HealthPolicy.from_settings(settings)
    start, end = (int(t.timestamp() * 1000) for t in settings.drift_reference or ())
    ignored = frozenset({"tenure_days"})  # the default: it moves with the shop's own age
    assert policy == HealthPolicy(0.7, 50, 0.3, DriftWindows(3, 9, (start, end)), ignored)
