"""Model quality says "unknown" until it is defined (issue 14): never a number it is not."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY

from cdpulse.app.learner import _export_quality
from cdpulse.models.quality import WINDOW, ModelQuality


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_one_class_leaves_auc_and_drift_unknown_however_many_labels() -> None:
    quality = ModelQuality()
    assert quality.unknown("roc_auc") == quality.unknown("log_loss") == "no labels yet"
    assert math.isnan(quality.auc) and math.isnan(quality.log_loss)
    # The make demo case: thousands of labels, all active, and a score that moves as the
    # model learns the base rate (what made ADWIN alarm).
    for i in range(3 * WINDOW):
        quality.update(0, 0.5 / (1 + i / 100))
    assert math.isnan(quality.auc)
    assert quality.unknown("roc_auc") == f"only active (0) labels among the last {WINDOW}"
    assert quality.unknown("drift") and quality.drifts == 0
    assert quality.unknown("log_loss") == "" and 0 < quality.log_loss < 1
    assert math.isnan(quality.summary()["roc_auc"])


def test_auc_is_defined_while_both_classes_are_in_the_window_only() -> None:
    quality = ModelQuality()
    quality.update(1, 0.9)
    assert quality.unknown("roc_auc") == f"only churned (1) labels among the last {WINDOW}"
    quality.update(0, 0.1)
    assert quality.auc == 1.0 and quality.unknown("drift") == ""
    for _ in range(WINDOW - 2):
        quality.update(0, 0.1)
    assert quality.auc == 1.0  # the positive is the oldest label of the window
    assert float(quality.roc_auc.get()) == 1.0  # and river's window agrees
    quality.update(0, 0.1)
    assert math.isnan(quality.auc)  # and now it has left it


def test_a_snapshot_pickled_before_the_class_positions_reads_unknown() -> None:
    quality = ModelQuality()
    quality.update(1, 0.8)
    quality.update(0, 0.2)
    del quality.last_positive, quality.last_negative  # as unpickled from an older release
    assert math.isnan(quality.auc)
    quality.update(1, 0.7)
    quality.update(0, 0.3)
    assert quality.auc == 1.0


def test_the_learner_exports_unknown_as_nan_with_defined_zero() -> None:
    quality = ModelQuality()
    for _ in range(10):
        quality.update(0, 0.3)
    _export_quality("test-one-class", quality)
    auc = sample("cdpulse_model_roc_auc", model="test-one-class")
    assert auc is not None and math.isnan(auc)
    defined = {
        figure: sample("cdpulse_model_quality_defined", model="test-one-class", metric=figure)
        for figure in ("roc_auc", "log_loss", "drift")
    }
    assert defined == {"roc_auc": 0, "log_loss": 1, "drift": 0}
    quality.update(1, 0.6)
    _export_quality("test-one-class", quality)
    assert sample("cdpulse_model_roc_auc", model="test-one-class") == 1.0
    assert sample("cdpulse_model_quality_defined", model="test-one-class", metric="roc_auc") == 1
