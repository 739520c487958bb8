"""Gamma-Gamma: how much a customer will spend per purchase, given what they spent so far.

Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", Journal of Marketing Research 42(4), 415-430, written out in Fader & Hardie
(2013), "The Gamma-Gamma Model of Monetary Value" (brucehardie.com/notes/025). A
customer's transaction values are Gamma(shape p, rate nu) around their own mean p/nu;
across customers nu ~ Gamma(shape q, rate v). Spend is assumed independent of how often
a customer buys, which is what lets lifetime value multiply the two models.

A customer is summarised by ``x``, the number of transactions averaged, and ``m``, their
average value; ``v`` carries the currency unit. With the CDNOW parameters (dollars) the
lifetimes documentation publishes, a customer whose 2 repeat purchases averaged $22.35:

>>> cdnow = GammaGammaParams(p=6.25, q=3.74, v=15.45)
>>> round(float(cdnow.expected_spend(x=2, m=22.35)), 2)
24.67
>>> round(float(cdnow.expected_spend(x=0, m=0)), 2)  # no history: the population mean
35.24
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
from scipy import special  # type: ignore[import-untyped]

from cdpulse.models.clv.fit import (
    ClvFitError,
    FloatArray,
    column,
    first_where,
    maximise_likelihood,
)


class GammaGammaParams(msgspec.Struct, frozen=True):
    """Fitted Gamma-Gamma parameters: value ~ Gamma(p, nu) per customer, nu ~ Gamma(q, v).

    ``q`` must exceed 1: at or below it the population's mean spend is infinite and no
    expectation exists. Plain data, like ``BGNBDParams``: pickle or ``msgspec.json``.
    """

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "v"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"GammaGammaParams.{name} = {value}: must be a finite number > 0")
        if self.q <= 1:
            raise ValueError(
                f"GammaGammaParams.q = {self.q}: must be > 1, else the mean spend is infinite"
            )

    def expected_spend(self, x: npt.ArrayLike, m: npt.ArrayLike) -> FloatArray:
        """The expected value of a customer's next transaction, given x transactions averaging m.

        The posterior mean (Fader, Hardie & Lee 2005; note 025)::

            E[Z | x, m] = p (v + x m) / (p x + q - 1)

        a weighted average of the population mean p v / (q - 1) and the customer's own
        ``m``, the weight on ``m`` growing with ``x``. With ``x`` = 0 it is the population
        mean and ``m`` is ignored. Arrays broadcast against each other.
        """
        xs, ms = np.broadcast_arrays(column("x", x), column("m", m))
        first_where("x", (xs < 0) | (xs != np.floor(xs)), xs, "must be a whole number >= 0")
        first_where("m", ms < 0, ms, "an average transaction value must be >= 0")
        p, q, v = self.p, self.q, self.v
        return np.asarray(p * (v + xs * ms) / (p * xs + q - 1), dtype=np.float64)


class GammaGamma:
    """Fitting Gamma-Gamma to many customers' (x, m) by maximum likelihood."""

    @staticmethod
    def log_likelihood(params: GammaGammaParams, x: npt.ArrayLike, m: npt.ArrayLike) -> float:
        """The log-likelihood of the averages of the customers with ``x`` > 0 (note 025)."""
        xs, ms = _spending(x, m)
        total, _ = _log_likelihood(np.log([params.p, params.q, params.v]), _Spending.of(xs, ms))
        return total

    @staticmethod
    def fit(
        x: npt.ArrayLike, m: npt.ArrayLike, *, start: GammaGammaParams | None = None
    ) -> GammaGammaParams:
        """The maximum-likelihood parameters; customers with ``x`` = 0 are left out.

        Customers without a repeat purchase carry no average to learn from, so arrays of
        all customers can be passed as they are. Every customer with ``x`` > 0 needs
        ``m`` > 0 (the gamma density has no mass at 0): leave out those whose orders were
        free or refunded in full. ``start`` (e.g. the previous fit) only speeds up a refit.

        Raises :class:`~cdpulse.models.clv.fit.ClvFitError` when nobody has ``x`` > 0, when
        the likelihood has no finite maximum (e.g. every average identical), when it does
        not converge, or when the fitted ``q`` is <= 1 (spend too heavy-tailed for a mean:
        cap outliers or keep the previous parameters).
        """
        xs, ms = _spending(x, m)
        if xs.size == 0:
            raise ClvFitError(
                "Gamma-Gamma: no customer has a repeat purchase, so there is no average "
                "transaction value to learn from; fit once some have"
            )
        # Money rescaled to order one, so tolerances mean the same in cents and in dollars;
        # v scales with money, p and q do not.
        scale = float(ms.mean())
        theta0 = np.zeros(3)
        if start is not None:
            theta0 = np.log([start.p, start.q, start.v / scale])
        n = xs.size
        spending = _Spending.of(xs, ms / scale)

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            total, gradient = _log_likelihood(theta, spending)
            return -total / n, -gradient / n

        p, q, v = np.exp(maximise_likelihood("Gamma-Gamma", objective, theta0))
        if q <= 1:
            raise ClvFitError(
                f"Gamma-Gamma: fitted q = {q:.3g} <= 1 means an infinite mean spend on these "
                "data (a few very large averages); cap outliers or keep the previous parameters"
            )
        return GammaGammaParams(p=float(p), q=float(q), v=float(v) * scale)


def _spending(x: npt.ArrayLike, m: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The customers with repeat purchases: their counts and averages, checked."""
    xs, ms = np.broadcast_arrays(column("x", x), column("m", m))
    if xs.ndim != 1:
        raise ValueError(f"x has shape {xs.shape}: fit takes one value per customer")
    first_where("x", (xs < 0) | (xs != np.floor(xs)), xs, "must be a whole number >= 0")
    first_where(
        "m",
        (xs > 0) & (ms <= 0),
        ms,
        "a customer with repeat purchases needs an average value > 0; leave them out",
    )
    repeat = xs > 0
    return xs[repeat], ms[repeat]


class _Spending(NamedTuple):
    """Averages as the likelihood reads them: what does not depend on the parameters, once."""

    x: FloatArray
    m: FloatArray
    levels: FloatArray  # the distinct values of x
    counts: npt.NDArray[np.intp]  # how many customers have each
    sum_log_m: float  # Σ ln m
    sum_x_log_m: float  # Σ x ln m

    @classmethod
    def of(cls, x: FloatArray, m: FloatArray) -> _Spending:
        levels, counts = np.unique(x, return_counts=True)
        log_m = np.log(m)
        return cls(x, m, levels, counts, float(log_m.sum()), float(x @ log_m))


def _log_likelihood(theta: FloatArray, s: _Spending) -> tuple[float, FloatArray]:
    """Total log-likelihood of the averages and its gradient in the log-parameters.

    The average of x values is Gamma(p x, nu x); mixing over nu ~ Gamma(q, v) gives
    ln f(m) = ln Γ(p x + q) - ln Γ(p x) - ln Γ(q) + q ln v + (p x - 1) ln m + p x ln x
    - (p x + q) ln(v + x m).
    """
    p, q, v = np.exp(theta)
    n = s.x.size
    # Terms in x alone are summed once per distinct x (see bgnbd._log_likelihood).
    levels, counts = s.levels, s.counts
    p_levels = p * levels
    psi_pxq, psi_px = special.digamma(p_levels + q), special.digamma(p_levels)
    log_levels = np.log(levels)
    v_xm = v + s.x * s.m
    log_v_xm = np.log(v_xm)
    p_x_q = p * s.x + q
    total = (
        counts @ (special.gammaln(p_levels + q) - special.gammaln(p_levels) + p_levels * log_levels)
        + n * (q * math.log(v) - special.gammaln(q))
        + p * s.sum_x_log_m
        - s.sum_log_m
        - p_x_q @ log_v_xm
    )
    d_p = counts @ (levels * (psi_pxq - psi_px + log_levels)) + s.sum_x_log_m - s.x @ log_v_xm
    d_q = counts @ psi_pxq + n * (math.log(v) - special.digamma(q)) - log_v_xm.sum()
    d_v = n * q / v - np.sum(p_x_q / v_xm)
    return float(total), np.array([d_p * p, d_q * q, d_v * v])
