"""The log loss of one churn prediction: what quality and importance are measured in."""

from __future__ import annotations

import math


def log_loss(y: int, p: float) -> float:
    """The log loss of one prediction, clipped so a certain miss is finite.

    >>> round(log_loss(1, 0.5), 4), round(log_loss(1, 0.0), 2)
    (0.6931, 34.54)
    """
    p = min(max(p, 1e-15), 1 - 1e-15)
    return -math.log(p) if y else -math.log(1 - p)
