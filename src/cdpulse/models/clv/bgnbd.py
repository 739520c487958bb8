"""BG/NBD: how many more purchases a customer will make, and whether they still buy at all.

The beta-geometric/negative binomial model of Fader, Hardie & Lee (2005), "'Counting
Your Customers' the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science
24(2), 275-284. While active, a customer buys as a Poisson process of rate λ; after each
*repeat* purchase they drop out for good with probability p. Across customers
λ ~ Gamma(shape r, rate alpha) and p ~ Beta(a, b).

A customer's history is three numbers, all in one time unit the caller chooses:

* ``x``: repeat purchases, the purchases after the first;
* ``t_x``: time of the last purchase, counted from the first (0 when ``x`` is 0);
* ``T``: age, the time from the first purchase to now (``t_x <= T``).

``alpha`` carries that unit (``r / alpha`` is a purchase rate): parameters fitted in weeks
predict in weeks. The engine uses days (``cdpulse.models.clv.summary_from_profile``).

With the parameters the paper publishes for CDNOW (weeks), its first customer (two repeat
purchases, the last in week 30.43, observed for 38.86 weeks):

>>> cdnow = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
>>> round(float(cdnow.p_alive(x=2, t_x=30.43, T=38.86)), 3)
0.727
>>> round(float(cdnow.expected_purchases(39, x=2, t_x=30.43, T=38.86)), 3)
1.226
>>> float(cdnow.p_alive(x=0, t_x=0, T=38.86))
1.0
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

# The conditional expectation divides by (a - 1) a difference that vanishes at a = 1 (the
# singularity is removable). Within this distance of 1 the difference loses digits to
# rounding, so the value is interpolated between a = 1 - H and a = 1 + H instead: the
# interpolation error is O(H^2) ~ 1e-8, the rounding error avoided up to ~1e-16 / |a - 1|.
_NEAR_ONE = 1e-4

# With x = 0 and a + b = 1, the hypergeometric term's c parameter is exactly 0, a pole that
# the factor c cancels. A nearby c is computed accurately (no cancellation there), so the
# exact point is evaluated at b + 1e-12: a relative change below 1e-11.
_C_NUDGE = 1e-12

# Where C - A - B (= x + r - a + 1) reaches this, 2F1 is summed as a power series; its terms
# then fall at least like n^-21, which bounds the work (a few hundred terms at most).
_SERIES_FROM = 20.0
_SERIES_TERMS = 100_000


class BGNBDParams(msgspec.Struct, frozen=True):
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b).

    Plain data: pickles (the learner's snapshot in Redis is a pickle), and encodes to JSON
    with ``msgspec.json.encode`` (decoding validates again).

    >>> params = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    >>> msgspec.json.decode(msgspec.json.encode(params), type=BGNBDParams) == params
    True
    """

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"BGNBDParams.{name} = {value}: must be a finite number > 0")

    def p_alive(self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
        """The probability that a customer with this history has not dropped out.

        Fader, Hardie & Lee (2008), "Computing P(alive) Using the BG/NBD Model"
        (brucehardie.com/notes/021)::

            P(alive) = 1 / (1 + [x > 0] · a / (b + x - 1) · ((alpha + T) / (alpha + t_x))^(r + x))

        Exactly 1 when ``x`` is 0: dropping out happens only right after a repeat purchase.
        Arrays broadcast against each other.
        """
        xs, t_xs, Ts = _history(x, t_x, T)
        return _p_alive(self, xs, t_xs, Ts)

    def expected_purchases(
        self, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
    ) -> FloatArray:
        """The expected number of purchases in the next ``t`` time units, given the history.

        Fader, Hardie & Lee (2005), eq. (10)::

            E[Y(t) | x, t_x, T] = (a + b + x - 1) / (a - 1)
                · [1 - ((alpha + T) / (alpha + T + t))^(r + x)
                       · 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))]
                · P(alive | x, t_x, T)

        computed after Euler's transformation 2F1(A, B; C; z) = (1 - z)^(C-A-B)
        2F1(C - A, C - B; C; z), which turns the bracket into
        1 - (1 - z)^(a - 1) · 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z): its first two
        parameters no longer grow with ``x``, so heavy buyers and long horizons stay finite
        where the original form overflows. Arrays broadcast against each other.
        """
        xs, t_xs, Ts = _history(x, t_x, T)
        ts = column("t", t)
        first_where("t", ts < 0, ts, "the horizon must be >= 0")
        alive = _p_alive(self, xs, t_xs, Ts)
        a = self.a
        if abs(a - 1.0) < _NEAR_ONE:
            low = _purchases_if_alive(self, 1.0 - _NEAR_ONE, ts, xs, Ts)
            high = _purchases_if_alive(self, 1.0 + _NEAR_ONE, ts, xs, Ts)
            weight = (a - (1.0 - _NEAR_ONE)) / (2 * _NEAR_ONE)
            return (low + weight * (high - low)) * alive
        return _purchases_if_alive(self, a, ts, xs, Ts) * alive


class BGNBD:
    """Fitting BG/NBD to many customers' histories by maximum likelihood."""

    @staticmethod
    def log_likelihood(
        params: BGNBDParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
    ) -> float:
        """The log-likelihood of the histories under ``params`` (Fader, Hardie & Lee 2005, eq. 6).

        It is a density in time, so it depends on the unit: CDNOW in weeks at the published
        parameters gives the published -9582.4.
        """
        xs, t_xs, Ts = _history(x, t_x, T)
        theta = np.log([params.r, params.alpha, params.a, params.b])
        total, _ = _log_likelihood(theta, _Histories.of(xs, t_xs, Ts))
        return total

    @staticmethod
    def fit(
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,
        *,
        start: BGNBDParams | None = None,
    ) -> BGNBDParams:
        """The maximum-likelihood parameters for these histories (one element per customer).

        ``start``, typically the previous fit, only speeds up a refit; the answer is the
        same. Raises :class:`~cdpulse.models.clv.fit.ClvFitError` when the data cannot
        determine the parameters: nobody made a repeat purchase (the likelihood is then
        largest in the limit r -> 0, no finite estimate), too few customers or all alike,
        or no convergence. The caller then keeps its previous parameters.
        """
        xs, t_xs, Ts = _history(x, t_x, T)
        if xs.ndim != 1 or xs.size == 0:
            raise ValueError(f"x has shape {xs.shape}: fit takes one value per customer")
        if not (xs > 0).any():
            raise ClvFitError(
                f"BG/NBD: none of the {xs.size} customers made a repeat purchase, so nothing "
                "tells how often customers buy again; fit once some have"
            )
        # Time rescaled to order one so that the optimiser's tolerances mean the same for
        # days and weeks; alpha scales with time, the other three parameters do not.
        scale = float(Ts.mean()) or 1.0
        theta0 = np.zeros(4)
        if start is not None:
            theta0 = np.log([start.r, start.alpha / scale, start.a, start.b])
        n = xs.size
        histories = _Histories.of(xs, t_xs / scale, Ts / scale)

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            total, gradient = _log_likelihood(theta, histories)
            return -total / n, -gradient / n

        r, alpha, a, b = np.exp(maximise_likelihood("BG/NBD", objective, theta0))
        return BGNBDParams(r=float(r), alpha=float(alpha) * scale, a=float(a), b=float(b))


def _history(
    x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    xs, t_xs, Ts = np.broadcast_arrays(column("x", x), column("t_x", t_x), column("T", T))
    first_where(
        "x", (xs < 0) | (xs != np.floor(xs)), xs, "repeat purchases are a whole number >= 0"
    )
    first_where("t_x", t_xs < 0, t_xs, "the last purchase cannot come before the first")
    first_where("T", Ts < t_xs, Ts, "the age T must be >= t_x, the time of the last purchase")
    return xs, t_xs, Ts


def _p_alive(params: BGNBDParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    # b + x - 1 > 0 for x >= 1; x = 0 rows get b so the logarithm stays defined (unused).
    log_odds_dead = (
        math.log(a)
        - np.log(b + np.where(repeat, x - 1, 0.0))
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    return np.where(repeat, special.expit(-log_odds_dead), 1.0)


def _purchases_if_alive(
    params: BGNBDParams, a: float, t: FloatArray, x: FloatArray, T: FloatArray
) -> FloatArray:
    """Eq. (10) without its P(alive) factor, at shape ``a``, after Euler's transformation."""
    r, alpha, b = params.r, params.alpha, params.b
    c = a + b + x - 1
    c = np.where(c == 0.0, _C_NUDGE, c)
    log_still = np.log(alpha + T) - np.log(alpha + T + t)  # log(1 - z)
    z = -np.expm1(log_still)
    rest = np.exp((a - 1) * log_still) * _hyp2f1(c - r - x, a - 1, c, z)
    return np.asarray(c / (a - 1) * (1 - rest), dtype=np.float64)


def _hyp2f1(A: FloatArray, B: float, C: FloatArray, z: FloatArray) -> FloatArray:
    """Gauss's 2F1(A, B; C; z) for 0 <= z < 1, by scipy where it is reliable, else by its series.

    For z > 0.9 scipy's (cephes) hyp2f1 switches to a transformation in 1 - z whose gamma
    functions overflow when C is large, returning inf or nan when C - A - B is an integer.
    Here C - A - B = x + r - a + 1 grows with the repeat purchases x, and once it is large
    the plain power series converges fast (its terms fall like n^-(C - A - B + 1)), so it
    is summed directly. Checked against mpmath at 60 digits for r and a in [0.01, 20], b in
    [0.05, 50], x up to 1000 and horizons up to 10 years: relative error below 1e-8,
    where scipy alone returned nan for 0.6% of the cases.
    """
    shape = np.broadcast_shapes(np.shape(A), np.shape(C), np.shape(z))
    A, C, z = (np.ravel(v) for v in np.broadcast_arrays(A, C, z))
    value = np.empty(z.shape)
    by_series = C - A - B >= _SERIES_FROM
    value[~by_series] = special.hyp2f1(A[~by_series], B, C[~by_series], z[~by_series])
    if by_series.any():
        value[by_series] = _hyp2f1_series(A[by_series], B, C[by_series], z[by_series])
    return value.reshape(shape)


def _hyp2f1_series(A: FloatArray, B: float, C: FloatArray, z: FloatArray) -> FloatArray:
    term, total = np.ones(z.shape), np.ones(z.shape)
    for n in range(_SERIES_TERMS):
        term = term * ((A + n) * (B + n) / ((C + n) * (n + 1)) * z)
        total += term
        if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
            return total
    raise ArithmeticError(
        f"2F1 series: no convergence in {_SERIES_TERMS} terms (z up to {z.max()})"
    )


class _Histories(NamedTuple):
    """Histories as the likelihood reads them: flat, with every distinct x counted once."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    levels: FloatArray  # the distinct values of x
    counts: npt.NDArray[np.intp]  # how many customers have each

    @classmethod
    def of(cls, x: FloatArray, t_x: FloatArray, T: FloatArray) -> _Histories:
        levels, counts = np.unique(x, return_counts=True)
        return cls(x.ravel(), t_x.ravel(), T.ravel(), levels, counts)


def _log_likelihood(theta: FloatArray, h: _Histories) -> tuple[float, FloatArray]:
    """Total log-likelihood and its gradient in the log-parameters ``theta``.

    Eq. (6) of the paper, ln L = ln A1 + ln A2 + ln(A3 + [x > 0] A4), with
    ln A1 = ln Γ(r + x) - ln Γ(r) + r ln alpha, ln A2 = ln B(a, b + x) - ln B(a, b),
    ln A3 = -(r + x) ln(alpha + T), ln A4 = ln a - ln(b + x - 1) - (r + x) ln(alpha + t_x).
    A3 + A4 is summed with log-sum-exp: both underflow for heavy buyers.
    """
    r, alpha, a, b = np.exp(theta)
    n = h.x.size
    # Terms in x alone are summed once per distinct x: customers number up to millions,
    # distinct purchase counts a few hundred, and the special functions dominate the cost.
    levels, counts = h.levels, h.counts
    log_a12 = (
        special.gammaln(r + levels)
        - special.gammaln(r)
        + special.betaln(a, b + levels)
        - special.betaln(a, b)
    )
    repeat = h.x > 0
    r_x = r + h.x
    b_x1 = b + np.where(repeat, h.x - 1, 0.0)  # b + x - 1, defined (and unused) at x = 0
    log_aT, log_at = np.log(alpha + h.T), np.log(alpha + h.t_x)
    log_a3 = -r_x * log_aT
    log_a4 = np.where(repeat, math.log(a) - np.log(b_x1) - r_x * log_at, -np.inf)
    # log(A3 + A4) as max + log1p(exp(-|difference|)): np.logaddexp, ten times slower here
    log_a34 = np.maximum(log_a3, log_a4) + np.log1p(np.exp(-np.abs(log_a3 - log_a4)))
    total = float(counts @ log_a12 + n * r * math.log(alpha) + log_a34.sum())
    # Gradient: w3 and w4 are A3's and A4's shares of their sum. A derivative in a
    # log-parameter is the plain derivative times the parameter.
    w3, w4 = np.exp(log_a3 - log_a34), np.exp(log_a4 - log_a34)
    psi_ab, psi_abx = special.digamma(a + b), special.digamma(a + b + levels)
    d_r = counts @ (special.digamma(r + levels) - special.digamma(r)) + n * math.log(alpha)
    d_r -= np.sum(w3 * log_aT + w4 * log_at)
    d_alpha = n * r / alpha - np.sum(r_x * (w3 / (alpha + h.T) + w4 / (alpha + h.t_x)))
    d_a = counts @ (psi_ab - psi_abx) + w4.sum() / a
    d_b = counts @ (psi_ab + special.digamma(b + levels) - special.digamma(b) - psi_abx)
    d_b -= np.sum(w4 / b_x1)
    return total, np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
