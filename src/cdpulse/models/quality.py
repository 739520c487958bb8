"""Honest live quality of a model: prequential metrics on the labels that arrived.

Each labelled example is first predicted by the current model, then learned
(test-then-train), so every figure is measured on data the model had not seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from river import drift, metrics, utils

from cdpulse.models.churn.model import log_loss

WINDOW = 2000  # rolling metrics look at the last WINDOW labelled examples


@dataclass
class ModelQuality:
    """Rolling ROC AUC and log loss, totals, and an ADWIN alarm on the error stream."""

    roc_auc: Any = field(default_factory=lambda: metrics.RollingROCAUC(window_size=WINDOW))
    rolling_log_loss: Any = field(
        default_factory=lambda: utils.Rolling(metrics.LogLoss, window_size=WINDOW)
    )
    drift: Any = field(default_factory=drift.ADWIN)
    examples: int = 0
    positives: int = 0
    drifts: int = 0
    log_loss_sum: float = 0.0

    def update(self, y: int, p: float) -> bool:
        """Record one prediction ``p`` of a label ``y``; True when drift was detected."""
        self.roc_auc.update(bool(y), {True: p, False: 1 - p})
        self.rolling_log_loss.update(bool(y), {True: p, False: 1 - p})
        self.examples += 1
        self.positives += y
        self.log_loss_sum += log_loss(y, p)
        self.drift.update(abs(y - p))
        if self.drift.drift_detected:
            self.drifts += 1
            return True
        return False

    @property
    def auc(self) -> float:
        return float(self.roc_auc.get())

    @property
    def log_loss(self) -> float:
        return float(self.rolling_log_loss.get())

    def summary(self) -> dict[str, float]:
        return {
            "examples": self.examples,
            "positives": self.positives,
            "roc_auc": round(self.auc, 4),
            "log_loss": round(self.log_loss, 4),
            "drifts": self.drifts,
        }
