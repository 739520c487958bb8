"""An always-valid test for conversion rates: the mixture sequential probability ratio test.

Johari, Koomen, Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B
tests" (Operations Research, 2022). With the normal approximation, a difference of
rates d estimated with variance V, and a normal mixture N(0, tau^2) over the true
difference under the alternative, the mixture likelihood ratio against "no difference"

    L = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

is a martingale under the null; by Ville's inequality it exceeds 1/alpha at *any* of
infinitely many looks with probability at most alpha. So p = min(1, 1/L) may be read
every day and stopped on whenever it falls below alpha, without inflating false
positives; inverting the test gives a confidence sequence, an interval valid at every
look at once. The price: it is wider than a fixed-sample interval at any single look.

A difference of 2 points with a standard error of 1 point (z = 2) is not enough here,
where a fixed-sample test would call it; 4 points is:

>>> [round(always_valid_p(d, 0.0001, 0.05 ** 2), 4) for d in (0.02, 0.04)]
[0.7453, 0.0023]
>>> [round(x, 3) for x in confidence_sequence(0.04, 0.0001, 0.05 ** 2, 0.05)]
[0.009, 0.071]
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def log_mixture_ratio(difference: float, variance: float, tau2: float) -> float:
    """log L for an estimated ``difference`` with ``variance``, mixing variance ``tau2``."""
    if variance <= 0 or tau2 <= 0:
        raise ValueError(f"variance ({variance}) and tau^2 ({tau2}) must be > 0")
    return 0.5 * math.log(variance / (variance + tau2)) + (tau2 * difference**2) / (
        2 * variance * (variance + tau2)
    )


def always_valid_p(difference: float, variance: float, tau2: float) -> float:
    """min(1, 1/L): a p-value valid at every look, however many."""
    return min(1.0, math.exp(-log_mixture_ratio(difference, variance, tau2)))


def confidence_sequence(
    estimate: float, variance: float, tau2: float, alpha: float
) -> tuple[float, float]:
    """Every true value the test at level ``alpha`` does not reject, at this look."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    radius = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )
    return estimate - radius, estimate + radius


@dataclass(frozen=True, slots=True)
class Arm:
    """Exposed customers of one variant and how many of them converted."""

    exposures: int
    conversions: int

    @property
    def rate(self) -> float:
        return self.conversions / self.exposures if self.exposures else 0.0

    @property
    def variance(self) -> float:
        """Variance of the rate; half a success smoothed in so 0/n and n/n are not certain."""
        p = (self.conversions + 0.5) / (self.exposures + 1)
        return p * (1 - p) / max(1, self.exposures)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant against the control: difference of rates, its interval, its p-value."""

    difference: float
    interval: tuple[float, float]
    p_value: float

    @classmethod
    def of(cls, control: Arm, variant: Arm, alpha: float, tau: float) -> Comparison:
        if control.exposures == 0 or variant.exposures == 0:
            return cls(0.0, (-1.0, 1.0), 1.0)
        difference = variant.rate - control.rate
        variance = control.variance + variant.variance
        lo, hi = confidence_sequence(difference, variance, tau**2, alpha)
        p = always_valid_p(difference, variance, tau**2)
        return cls(difference, (max(-1.0, lo), min(1.0, hi)), p)


def rate_interval(arm: Arm, alpha: float, tau: float) -> tuple[float, float]:
    """An always-valid interval for one variant's conversion rate."""
    if arm.exposures == 0:
        return 0.0, 1.0
    lo, hi = confidence_sequence(arm.rate, arm.variance, tau**2, alpha)
    return max(0.0, lo), min(1.0, hi)
