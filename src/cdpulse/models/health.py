"""A model's health: whether its scores are trusted, from its live quality and input drift.

The verdict (``assess``) is one of:

* ``degraded``: the live ROC AUC (prequential, ``models/quality.py``) is below the floor,
  or an input's PSI against its reference (``models/drift.py``) reaches the drift
  threshold; each reason says which, in words.
* ``unknown``: nothing is degraded, but the quality is not defined yet: fewer than
  ``min_examples`` labels, or one class only among the recent ones (the reason says).
* ``ok``: otherwise. An input drift still unknown (too few examples in a window) does
  not make the verdict unknown: the quality is measured on the labels that arrived.

The churn learner assesses its model when it publishes a snapshot, from what it learned
in training-topic order, so the same examples give the same verdict live and in a replay
(no wall clock), and a score computed with snapshot v carries v's health.

>>> from cdpulse.models.quality import ModelQuality
>>> from cdpulse.models.drift import unknown_report
>>> quality = ModelQuality()
>>> for i in range(300):
...     _ = quality.update(i % 2, 0.4 if i % 2 else 0.6)   # every positive ranked below
>>> no_drift = unknown_report("no example observed yet")
>>> assess(quality, no_drift, HealthPolicy(auc_floor=0.6, min_examples=200)).to_json()
{'status': 'degraded', 'reasons': ['live AUC 0.00 below the floor 0.60']}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cdpulse.models.drift import DriftReport, DriftWindows

if TYPE_CHECKING:
    from cdpulse.models.quality import ModelQuality
    from cdpulse.settings import Settings

Status = Literal["ok", "degraded", "unknown"]


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The floors and thresholds a verdict applies (``CDPULSE_MODEL_*``, ``CDPULSE_DRIFT_*``)."""

    auc_floor: float = 0.6
    min_examples: int = 200
    psi_threshold: float = 0.25
    windows: DriftWindows = field(default_factory=lambda: DriftWindows(7, 28, None))
    ignored: frozenset[str] = frozenset()  # inputs whose drift is reported, not judged

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(
            settings.model_auc_floor,
            settings.model_health_min_examples,
            settings.drift_psi_threshold,
            DriftWindows.from_settings(settings),
            frozenset(settings.model_health_ignored_inputs),
        )


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """A verdict and its reasons in plain words (none when ``ok``)."""

    status: Status
    reasons: tuple[str, ...] = ()

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons)}


# Snapshots published before the learner assessed health, and no snapshot at all.
NOT_ASSESSED = ModelHealth("unknown", ("the snapshot was published before health was assessed",))
NO_MODEL = ModelHealth("unknown", ("no model yet",))


def assess(quality: ModelQuality, drift: DriftReport, policy: HealthPolicy) -> ModelHealth:
    """The health of a model whose live quality is ``quality`` and whose inputs drifted as
    ``drift`` says (the score's own drift is a symptom, not a cause: not read)."""
    reasons = []
    auc = quality.auc
    defined = quality.examples >= policy.min_examples and not math.isnan(auc)
    if defined and auc < policy.auc_floor:
        reasons.append(f"live AUC {auc:.2f} below the floor {policy.auc_floor:.2f}")
    reasons += drifted_inputs(drift, policy)
    if reasons:
        return ModelHealth("degraded", tuple(reasons))
    if not defined:
        why = quality.unknown("roc_auc")
        if quality.examples < policy.min_examples:
            why = f"{quality.examples} labels; {policy.min_examples} needed"
        return ModelHealth("unknown", (f"live quality not defined yet: {why}",))
    return ModelHealth("ok")


def drifted_inputs(drift: DriftReport, policy: HealthPolicy) -> list[str]:
    """Why ``drift`` degrades a model, in words: each judged input at or over the threshold."""
    reasons = []
    for feature in drift.features:
        if feature.name in policy.ignored:
            continue
        if feature.psi is not None and feature.psi >= policy.psi_threshold:
            psi, threshold = feature.psi, policy.psi_threshold
            reasons.append(f"input {feature.name} drifted (PSI {psi:.2f} >= {threshold:.2f})")
    return reasons


NO_DRIFT_REPORT = "no drift report yet"


def assess_drift(drift: DriftReport | None, policy: HealthPolicy) -> ModelHealth:
    """The health of a model no label reaches live (lifetime value, the recommender):
    its inputs' drift alone, judged as ``assess`` judges it (same thresholds, same words);
    unknown without a report or while its windows hold too few examples.

    >>> assess_drift(None, HealthPolicy()).to_json()
    {'status': 'unknown', 'reasons': ['input drift not known yet: no drift report yet']}
    """
    if drift is None:
        return ModelHealth("unknown", (f"input drift not known yet: {NO_DRIFT_REPORT}",))
    reasons = drifted_inputs(drift, policy)
    if reasons:
        return ModelHealth("degraded", tuple(reasons))
    if drift.status == "unknown":
        return ModelHealth("unknown", (f"input drift not known yet: {drift.unknown}",))
    return ModelHealth("ok")
