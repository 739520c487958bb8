"""The churn model: a River pipeline learned online, and the reasons for each score.

The default is ``StandardScaler | LogisticRegression``: its score decomposes exactly
into one contribution per feature (weight times standardised value), and the largest
contributions towards churn become the reasons. Other pipelines (``forest``) get
reasons by sensitivity: how much the score drops when a feature is set to its mean.

>>> model = ChurnModel.create("logistic")
>>> for _ in range(200):
...     model.learn_one({n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 40.0}, 1)
...     model.learn_one({n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 1.0}, 0)
>>> x = {n: 0.0 for n in FEATURE_NAMES} | {"days_since_last_visit": 41.0}
>>> model.predict_proba(x) > 0.9, model.reasons(x)[0]
(True, 'no visit for 41 days')
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field, fields
from typing import Any

from river import forest, linear_model, optim, preprocessing, stats

from cdpulse.models.churn.features import FEATURE_NAMES, describe
from cdpulse.models.churn.loss import log_loss as log_loss
from cdpulse.models.churn.permutation import PermutationImportance

MODEL_KINDS = ("logistic", "forest")


def _pipeline(kind: str) -> Any:
    if kind == "logistic":
        return preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(0.05), l2=1e-4
        )
    if kind == "forest":
        return forest.ARFClassifier(n_models=5, seed=7)
    raise ValueError(f"unknown churn model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


@dataclass
class ChurnModel:
    """An online churn classifier over the features of ``cdpulse.models.churn.features``."""

    kind: str
    pipeline: Any
    means: dict[str, stats.Mean] = field(default_factory=dict)
    examples: int = 0
    # The event time its training data covers: the earliest example's snapshot day and the
    # newest label's decision time (epoch ms); None until the learner records them.
    # Models pickled before this field read the class default.
    event_times: tuple[int, int] | None = None
    # Permutation importance, for the kinds without weights (``permutation.py``); None
    # for a logistic model, and in models pickled before it was kept.
    permutation: PermutationImportance | None = None

    @classmethod
    def create(cls, kind: str = "logistic") -> ChurnModel:
        permutation = None if kind == "logistic" else PermutationImportance(FEATURE_NAMES)
        return cls(
            kind, _pipeline(kind), {n: stats.Mean() for n in FEATURE_NAMES}, permutation=permutation
        )

    def learn_one(self, x: dict[str, float], y: int) -> None:
        for name, mean in self.means.items():
            mean.update(x[name])
        self.pipeline.learn_one(x, bool(y))
        self.examples += 1

    def predict_proba(self, x: dict[str, float]) -> float:
        proba = self.pipeline.predict_proba_one(x)
        return float(proba.get(True, 0.0))

    def contributions(self, x: dict[str, float]) -> dict[str, float]:
        """How much each feature pushes the score towards churn (log-odds or probability)."""
        if self.kind == "logistic":
            scaler = self.pipeline["StandardScaler"]
            weights = self.pipeline["LogisticRegression"].weights
            scaled = scaler.transform_one(x)
            return {n: weights.get(n, 0.0) * scaled.get(n, 0.0) for n in FEATURE_NAMES}
        base = self.predict_proba(x)
        return {n: base - self.predict_proba(x | {n: self.means[n].get()}) for n in FEATURE_NAMES}

    def reasons(self, x: dict[str, float], k: int = 3) -> list[str]:
        """The ``k`` largest contributions to the score, most towards churn first, in words.

        A low score's reasons may all pull away from churn; the words state the facts
        ("3 events this week") so they read right either way.
        """
        ranked = sorted(self.contributions(x).items(), key=lambda kv: (-kv[1], kv[0]))
        return [describe(name, x) for name, _ in ranked[:k]]


@dataclass(frozen=True, slots=True)
class LinearScorer:
    """A logistic churn model's score and reasons as plain arithmetic, for the hot path.

    River scores a pipeline through dicts and its transformers (~20 µs with the reasons);
    a snapshot never changes, so its scaler's means and deviations and the regression's
    weights are read out once and the same formula (standardise, dot, sigmoid) is run on
    a plain vector. It agrees with ``ChurnModel`` to floating-point rounding.
    """

    means: tuple[float, ...]
    scales: tuple[float, ...]  # 1 / standard deviation; 0 where the variance is 0
    weights: tuple[float, ...]
    intercept: float

    @classmethod
    def of(cls, model: ChurnModel) -> LinearScorer | None:
        """The scorer of a logistic model (None for other kinds)."""
        if not isinstance(model, ChurnModel) or model.kind != "logistic":
            return None  # a forest (or any other model) is scored as itself
        scaler = model.pipeline["StandardScaler"]
        regression = model.pipeline["LogisticRegression"]
        weights = regression.weights
        means, scales = [], []
        for name in FEATURE_NAMES:
            variance = scaler.vars.get(name, 0.0)
            means.append(float(scaler.means.get(name, 0.0)))
            scales.append(1.0 / variance**0.5 if variance else 0.0)
        return cls(
            tuple(means),
            tuple(scales),
            tuple(float(weights.get(name, 0.0)) for name in FEATURE_NAMES),
            float(regression.intercept),
        )

    def score(self, x: dict[str, float], k: int = 3) -> tuple[float, list[str]]:
        """The churn probability at ``x`` and its ``k`` largest contributions in words."""
        contributions = []
        z = self.intercept
        for name, m, s, w in zip(FEATURE_NAMES, self.means, self.scales, self.weights, strict=True):
            c = w * ((x[name] - m) * s)
            contributions.append((-c, name))
            z += c
        p = 0.0 if z < -30 else 1.0 if z > 30 else 1.0 / (1.0 + math.exp(-z))
        contributions.sort()
        return p, [describe(name, x) for _, name in contributions[:k]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A published model, what the worker and the api score with, and the learner's whole
    state."""

    version: int
    model: ChurnModel
    quality: Any  # ModelQuality; Any keeps this module free of the metrics import cycle
    offset: int  # the last training-topic offset learned: re-delivered examples are skipped
    # The model's health when published (``models/health.py``: a ModelHealth), and the
    # per-day input histograms it was judged from (a DriftMonitor fed in training-topic
    # order, so a restarted learner resumes them with the offset), as its msgpack bytes:
    # only a learner reads them, and a scorer loading the snapshot copies them undecoded.
    # None in snapshots published before health was assessed (``__setstate__``).
    health: Any = None
    inputs: bytes | None = None

    def __getstate__(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[Any]) -> None:
        # An older snapshot pickled fewer fields: the ones it lacks read their defaults.
        for i, f in enumerate(fields(self)):
            object.__setattr__(self, f.name, state[i] if i < len(state) else f.default)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(blob: bytes) -> Snapshot:
        snapshot = pickle.loads(blob)  # our own snapshots, from our own Redis
        assert isinstance(snapshot, Snapshot)
        return snapshot
