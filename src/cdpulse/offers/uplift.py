"""Uplift over doing nothing: conversion of fired customers minus that of the holdout.

>>> report = uplift("cart", {"treated": 900, "treated_converted": 180,
...                          "holdout": 100, "holdout_converted": 10})
>>> report["treated"]["rate"], report["holdout"]["rate"], report["uplift"]
(0.2, 0.1, 0.1)
>>> report["ci95"][0] < 0.1 < report["ci95"][1]
True
"""

from __future__ import annotations

import math
from typing import Any


def uplift(rule: str, counts: dict[str, int]) -> dict[str, Any]:
    """The uplift of ``rule`` from its counters, with a normal-approximation 95% interval.

    Conversions count only once an attribution window has closed, so the rates are over
    exposures whose window may still be open: they are a lower bound until it closes.
    """
    groups = {}
    for group in ("treated", "holdout"):
        n = counts.get(group, 0)
        converted = counts.get(f"{group}_converted", 0)
        groups[group] = {"exposed": n, "converted": converted, "rate": converted / n if n else None}
    p1, p0 = groups["treated"]["rate"], groups["holdout"]["rate"]
    report: dict[str, Any] = {"rule": rule, **groups, "uplift": None, "ci95": None}
    if p1 is not None and p0 is not None:
        n1, n0 = counts["treated"], counts["holdout"]
        diff = p1 - p0
        se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        report["uplift"] = round(diff, 6)
        report["ci95"] = [round(diff - 1.96 * se, 6), round(diff + 1.96 * se, 6)]
    return report
