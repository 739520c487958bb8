"""Honest live quality of a model: prequential metrics on the labels that arrived.

Each labelled example is first predicted by the current model, then learned
(test-then-train), so every figure is measured on data the model had not seen.

A figure is *unknown* until it is defined, and then reads NaN, never a number:

* ROC AUC ranks positives against negatives, so it needs both classes among the last
  ``WINDOW`` labels; with one class only, river answers 0.0, which reads as a model
  that is always wrong.
* drift alarms too: with one class the error stream ``|y - p|`` is the model's own
  score, and ADWIN alarms while the model learns the base rate, not on drift. ADWIN
  still reads every example; an alarm counts only while both classes are in the window.
* log loss needs one label.

``unknown(metric)`` says why, in words, and ``""`` once the figure is defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from river import drift, metrics, utils

from cdpulse.models.churn.model import log_loss

WINDOW = 2000  # rolling metrics look at the last WINDOW labelled examples

Figure = Literal["roc_auc", "log_loss", "drift"]
FIGURES: tuple[Figure, ...] = ("roc_auc", "log_loss", "drift")


@dataclass
class ModelQuality:
    """Rolling ROC AUC and log loss, totals, and an ADWIN alarm on the error stream.

    >>> quality = ModelQuality()
    >>> for _ in range(3):
    ...     _ = quality.update(0, 0.2)
    >>> quality.auc, quality.unknown("roc_auc")
    (nan, 'only active (0) labels among the last 2000')
    >>> _ = quality.update(1, 0.7)
    >>> quality.auc, quality.unknown("roc_auc")
    (1.0, '')
    """

    roc_auc: Any = field(default_factory=lambda: metrics.RollingROCAUC(window_size=WINDOW))
    rolling_log_loss: Any = field(
        default_factory=lambda: utils.Rolling(metrics.LogLoss, window_size=WINDOW)
    )
    drift: Any = field(default_factory=drift.ADWIN)
    examples: int = 0
    positives: int = 0
    drifts: int = 0
    log_loss_sum: float = 0.0
    # The example number (1-based) of the newest label of each class, 0 for none yet.
    # Snapshots pickled before these fields read the class defaults: unknown until both
    # classes arrive again.
    last_positive: int = 0
    last_negative: int = 0

    def update(self, y: int, p: float) -> bool:
        """Record one prediction ``p`` of a label ``y``; True when a drift alarm counted."""
        self.roc_auc.update(bool(y), {True: p, False: 1 - p})
        self.rolling_log_loss.update(bool(y), {True: p, False: 1 - p})
        self.examples += 1
        self.positives += y
        if y:
            self.last_positive = self.examples
        else:
            self.last_negative = self.examples
        self.log_loss_sum += log_loss(y, p)
        self.drift.update(abs(y - p))
        if self.drift.drift_detected and not self.unknown("drift"):
            self.drifts += 1
            return True
        return False

    def unknown(self, figure: Figure) -> str:
        """Why ``figure`` is not defined yet, or ``""`` when it is."""
        if self.examples == 0:
            return "no labels yet"
        if figure == "log_loss":
            return ""
        oldest = max(0, self.examples - WINDOW)  # the newest example out of the window
        if self.last_positive <= oldest:
            return f"only active (0) labels among the last {WINDOW}"
        if self.last_negative <= oldest:
            return f"only churned (1) labels among the last {WINDOW}"
        return ""

    @property
    def auc(self) -> float:
        return math.nan if self.unknown("roc_auc") else float(self.roc_auc.get())

    @property
    def log_loss(self) -> float:
        return math.nan if self.unknown("log_loss") else float(self.rolling_log_loss.get())

    def summary(self) -> dict[str, float]:
        return {
            "examples": self.examples,
            "positives": self.positives,
            "roc_auc": round(self.auc, 4),
            "log_loss": round(self.log_loss, 4),
            "drifts": self.drifts,
        }
