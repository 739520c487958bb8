"""What ``GET /v1/experiments/{name}`` shows: per-variant rates, intervals and the test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdpulse.experiments.definitions import Experiment
from cdpulse.experiments.sequential import Arm, Comparison, rate_interval


def report(experiment: Experiment, arms: Mapping[str, Arm]) -> dict[str, Any]:
    """The results document of ``experiment`` given each variant's counts."""
    control = arms.get(experiment.control, Arm(0, 0))
    variants = []
    for name, weight in experiment.variants:
        arm = arms.get(name, Arm(0, 0))
        lo, hi = rate_interval(arm, experiment.alpha, experiment.mixing_sd)
        entry: dict[str, Any] = {
            "name": name,
            "weight": weight,
            "exposures": arm.exposures,
            "conversions": arm.conversions,
            "conversion_rate": round(arm.rate, 6),
            "interval": [round(lo, 6), round(hi, 6)],
        }
        if name != experiment.control:
            c = Comparison.of(control, arm, experiment.alpha, experiment.mixing_sd)
            entry["versus_control"] = {
                "difference": round(c.difference, 6),
                "interval": [round(c.interval[0], 6), round(c.interval[1], 6)],
                "p_value": round(c.p_value, 6),
                "significant": c.p_value <= experiment.alpha,
            }
        variants.append(entry)
    return {
        "name": experiment.name,
        "control": experiment.control,
        "audience": experiment.audience,
        "window_days": experiment.window_days,
        "alpha": experiment.alpha,
        "test": "mixture SPRT (always valid: read it as often as you like)",
        "variants": variants,
    }
