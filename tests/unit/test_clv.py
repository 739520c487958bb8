"""Lifetime value against published numbers, an independent integral, and simulation.

Oracles, not snapshots: the CDNOW fits must land on the parameters Fader, Hardie & Lee
published; the closed-form conditional expectation must equal a numerical integral of
its definition; a simulated BG/NBD customer base must give back the parameters it was
drawn from, and its unseen future must match what the model expects of it. The CDNOW
files come from the lifetimes wheel, found by path and never imported.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special  # type: ignore[import-untyped]

from cdpulse.models import clv
from cdpulse.models.clv.bgnbd import BGNBD, BGNBDParams
from cdpulse.models.clv.fit import ClvFitError, FloatArray
from cdpulse.models.clv.gamma_gamma import GammaGamma, GammaGammaParams
from cdpulse.models.clv.model import CustomerSummary, LifetimeValue, summary_from_profile
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY

# Fader, Hardie & Lee (2005), CDNOW, weeks: the parameters and the log-likelihood.
PUBLISHED_BGNBD = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_LOG_LIKELIHOOD = -9582.4


def cdnow(name: str) -> FloatArray:
    """A CDNOW summary the lifetimes wheel ships, without its header and id column."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin is not None, (
        "the lifetimes wheel ships CDNOW: `make venv` installs it (pip install --no-deps lifetimes)"
    )
    path = Path(spec.origin).parent / "datasets" / name
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, 1:]


@pytest.fixture(scope="module")
def cdnow_summary() -> tuple[FloatArray, FloatArray, FloatArray]:
    """x, t_x, T in weeks of the 2357 CDNOW customers."""
    data = cdnow("cdnow_customers_summary.csv")
    assert data.shape == (2357, 3)
    return data[:, 0], data[:, 1], data[:, 2]


@pytest.fixture(scope="module")
def cdnow_fit(cdnow_summary: tuple[FloatArray, FloatArray, FloatArray]) -> BGNBDParams:
    return BGNBD.fit(*cdnow_summary)


# --- BG/NBD on CDNOW -----------------------------------------------------------------------


def test_cdnow_fit_reproduces_the_published_parameters(cdnow_fit: BGNBDParams) -> None:
    fitted = [round(value, 3) for value in (cdnow_fit.r, cdnow_fit.alpha, cdnow_fit.a, cdnow_fit.b)]
    assert fitted == [0.243, 4.414, 0.793, 2.426]


def test_cdnow_log_likelihood_is_the_published_value(
    cdnow_summary: tuple[FloatArray, FloatArray, FloatArray], cdnow_fit: BGNBDParams
) -> None:
    assert round(BGNBD.log_likelihood(cdnow_fit, *cdnow_summary), 1) == PUBLISHED_LOG_LIKELIHOOD
    # the published (rounded) parameters are, to the paper's precision, the maximum too
    published = BGNBD.log_likelihood(PUBLISHED_BGNBD, *cdnow_summary)
    assert round(published, 1) == PUBLISHED_LOG_LIKELIHOOD
    assert published <= BGNBD.log_likelihood(cdnow_fit, *cdnow_summary)


def test_fitting_in_days_instead_of_weeks_only_rescales_alpha(
    cdnow_summary: tuple[FloatArray, FloatArray, FloatArray], cdnow_fit: BGNBDParams
) -> None:
    x, t_x, T = cdnow_summary
    in_days = BGNBD.fit(x, t_x * 7, T * 7)
    assert in_days.alpha == pytest.approx(cdnow_fit.alpha * 7, rel=1e-5)
    assert (in_days.r, in_days.a, in_days.b) == pytest.approx(
        (cdnow_fit.r, cdnow_fit.a, cdnow_fit.b), rel=1e-5
    )


def test_a_refit_started_from_the_previous_parameters_finds_the_same_maximum(
    cdnow_summary: tuple[FloatArray, FloatArray, FloatArray], cdnow_fit: BGNBDParams
) -> None:
    again = BGNBD.fit(*cdnow_summary, start=PUBLISHED_BGNBD)
    assert (again.r, again.alpha, again.a, again.b) == pytest.approx(
        (cdnow_fit.r, cdnow_fit.alpha, cdnow_fit.a, cdnow_fit.b), rel=1e-5
    )


# --- the conditional expectation against its definition ------------------------------------


def expected_purchases_by_integral(
    params: BGNBDParams, t: float, x: int, t_x: float, T: float
) -> float:
    """E[Y(t) | x, t_x, T] straight from the model, by quadrature.

    Alive at T, a customer's rate is Gamma(r + x, alpha + T) and their dropout probability
    Beta(a, b + x) a posteriori; at rate λ and dropout p the expected purchases in t are
    (1 - exp(-λ p t)) / p. Averaging over λ gives (1 - (1 + p t / (alpha + T))^-(r + x)) / p,
    left to integrate over p, times P(alive).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    s, k = r + x, t / (alpha + T)

    def per_dropout(p: float) -> float:
        return -math.expm1(-s * math.log1p(p * k)) / p if p > 0 else s * k

    # quad's algebraic weight p^(a-1) (1-p)^(b+x-1) takes the Beta density's end points
    value, _ = integrate.quad(
        per_dropout, 0, 1, weight="alg", wvar=(a - 1, b + x - 1), epsabs=0, epsrel=1e-12
    )
    value /= math.exp(special.betaln(a, b + x))
    return float(value) * float(params.p_alive(x, t_x, T))


INTEGRAL_CASES = [
    # (r, alpha, a, b, t, x, t_x, T)
    (0.243, 4.414, 0.793, 2.426, 39, 2, 30.43, 38.86),  # CDNOW's first customer
    (0.243, 4.414, 0.793, 2.426, 39, 0, 0.0, 38.86),
    (0.243, 4.414, 0.793, 2.426, 520, 26, 30.86, 31.0),  # a heavy buyer, ten years on
    (2.0, 30.0, 3.5, 8.0, 365, 300, 700.0, 730.0),  # hundreds of orders
    (0.5, 20.0, 1.0, 3.0, 90, 4, 50.0, 120.0),  # a = 1: the removable singularity
    (0.5, 20.0, 1.0 + 3e-5, 3.0, 90, 4, 50.0, 120.0),  # close to it
    (0.5, 20.0, 1.0 - 3e-5, 3.0, 90, 4, 50.0, 120.0),
    (0.5, 20.0, 0.4, 0.6, 90, 0, 0.0, 120.0),  # x = 0 and a + b = 1: the c = 0 pole
    (0.5, 20.0, 0.3, 0.2, 90, 0, 0.0, 120.0),  # a + b < 1
    (5.0, 0.5, 12.0, 0.3, 10, 1, 0.5, 2.0),
    (1.0, 0.25, 2.0, 1.0, 3, 99, 0.0, 0.0),  # where scipy's hyp2f1 alone returns inf
    (0.7, 10.0, 0.7, 2.0, 3650, 400, 300.0, 365.0),  # r = a, x large: scipy's gives nan
]


@pytest.mark.parametrize(("r", "alpha", "a", "b", "t", "x", "t_x", "T"), INTEGRAL_CASES)
def test_expected_purchases_equal_the_integral_of_their_definition(
    r: float, alpha: float, a: float, b: float, t: float, x: int, t_x: float, T: float
) -> None:
    params = BGNBDParams(r=r, alpha=alpha, a=a, b=b)
    closed_form = float(params.expected_purchases(t, x, t_x, T))
    assert closed_form == pytest.approx(
        expected_purchases_by_integral(params, t, x, t_x, T), rel=1e-7
    )


# --- properties ----------------------------------------------------------------------------

# The domain the conditional expectation was checked on against mpmath (see bgnbd._hyp2f1);
# fitted customer bases sit well inside it (CDNOW: r 0.24, a 0.79, b 2.4).
shapes = st.floats(min_value=0.01, max_value=20.0)
parameters = st.builds(
    BGNBDParams,
    r=shapes,
    alpha=st.floats(min_value=0.01, max_value=1000.0),
    a=shapes,
    b=st.floats(min_value=0.05, max_value=50.0),
)
ages = st.floats(min_value=0.0, max_value=3650.0)
fractions = st.floats(min_value=0.0, max_value=1.0)
repeats = st.integers(min_value=0, max_value=1000)


@settings(max_examples=300, deadline=None)
@given(parameters, repeats, fractions, ages, st.floats(min_value=0.0, max_value=3650.0))
def test_p_alive_is_a_probability_that_falls_with_silence(
    params: BGNBDParams, x: int, fraction: float, T: float, more: float
) -> None:
    t_x = fraction * T if x > 0 else 0.0
    now, later = float(params.p_alive(x, t_x, T)), float(params.p_alive(x, t_x, T + more))
    assert 0.0 <= later <= now <= 1.0
    if x == 0:
        assert now == later == 1.0


def test_p_alive_falls_strictly_while_a_repeat_buyer_stays_silent() -> None:
    ages = np.linspace(31.0, 200.0, 50)
    alive = PUBLISHED_BGNBD.p_alive(3, 30.0, ages)
    assert np.all(np.diff(alive) < 0)
    assert np.all(PUBLISHED_BGNBD.p_alive(0, 0.0, ages) == 1.0)


@settings(max_examples=300, deadline=None)
@given(parameters, repeats, fractions, ages, st.lists(ages, min_size=2, max_size=6))
def test_expected_purchases_grow_with_the_horizon(
    params: BGNBDParams, x: int, fraction: float, T: float, horizons: list[float]
) -> None:
    t_x = fraction * T if x > 0 else 0.0
    horizon = np.array(sorted([0.0, *horizons]))
    expected = params.expected_purchases(horizon, x, t_x, T)
    assert np.all(np.isfinite(expected))
    assert expected[0] == 0.0
    assert np.all(np.diff(expected) >= -1e-9 * expected[-1])


# --- simulation ----------------------------------------------------------------------------


class Simulated(NamedTuple):
    """A simulated customer base: histories up to T, then what happened next."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    future: FloatArray  # purchases in (T, T + horizon]
    alive: npt.NDArray[np.bool_]  # still active at T


def simulate_bgnbd(
    params: BGNBDParams, T: FloatArray, horizon: float, rng: np.random.Generator
) -> Simulated:
    """Customers drawn from the BG/NBD story itself, from their first purchase on.

    Each customer gets λ ~ Gamma(r, alpha) and p ~ Beta(a, b), then buys at exponential
    intervals and drops out with probability p right after each repeat purchase.
    """
    n = T.size
    rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    dropout = rng.beta(params.a, params.b, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    now, active, alive = np.zeros(n), np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    while active.any():
        who = np.flatnonzero(active)
        now[who] += rng.exponential(1.0 / rate[who])
        before, after = now[who] <= T[who], now[who] <= T[who] + horizon
        buyers = who[after]
        x[who[before]] += 1
        t_x[who[before]] = now[who[before]]
        future[who[~before & after]] += 1
        active[who[~after]] = False
        leaving = buyers[rng.random(buyers.size) < dropout[buyers]]
        active[leaving] = False
        alive[leaving[now[leaving] <= T[leaving]]] = False
    return Simulated(x, t_x, T, future, alive)


TRUE_BGNBD = BGNBDParams(r=0.5, alpha=20.0, a=0.7, b=3.0)  # days


@pytest.fixture(scope="module")
def simulated() -> Simulated:
    rng = np.random.default_rng(20050101)
    return simulate_bgnbd(TRUE_BGNBD, rng.uniform(180.0, 720.0, 30_000), 180.0, rng)


def test_a_simulated_customer_base_gives_back_its_parameters(simulated: Simulated) -> None:
    fitted = BGNBD.fit(simulated.x, simulated.t_x, simulated.T)
    # Tolerances ~3.5 standard errors, measured over seeds at this size and design: the
    # purchase rate is pinned down far better than the dropout.
    assert fitted.r == pytest.approx(TRUE_BGNBD.r, rel=0.05)
    assert fitted.alpha == pytest.approx(TRUE_BGNBD.alpha, rel=0.05)
    assert fitted.a == pytest.approx(TRUE_BGNBD.a, rel=0.15)
    assert fitted.b == pytest.approx(TRUE_BGNBD.b, rel=0.15)


def test_the_simulated_future_is_what_the_model_expects(simulated: Simulated) -> None:
    history = (simulated.x, simulated.t_x, simulated.T)
    expected = TRUE_BGNBD.expected_purchases(180.0, *history)
    assert expected.sum() == pytest.approx(simulated.future.sum(), rel=0.03)
    assert TRUE_BGNBD.p_alive(*history).sum() == pytest.approx(simulated.alive.sum(), rel=0.02)
    # and per group: the repeat buyers P(alive) doubts most buy as little as it says
    doubtful = TRUE_BGNBD.p_alive(*history) < 0.5
    assert doubtful.sum() > 1000
    assert expected[doubtful].sum() == pytest.approx(simulated.future[doubtful].sum(), rel=0.1)


# --- edge cases ----------------------------------------------------------------------------


def test_nobody_buying_again_cannot_be_fitted() -> None:
    with pytest.raises(ClvFitError, match="none of the 3 customers made a repeat purchase"):
        BGNBD.fit([0, 0, 0], [0.0, 0.0, 0.0], [10.0, 20.0, 30.0])


@pytest.mark.parametrize(
    ("x", "t_x", "T"),
    [
        ([1], [5.0], [10.0]),  # one customer
        ([2, 0, 1], [5.0, 0.0, 3.0], [10.0, 10.0, 8.0]),  # three
        ([1] * 50 + [0] * 50, [5.0] * 50 + [0.0] * 50, [10.0] * 100),  # all alike
    ],
)
def test_data_without_a_finite_maximum_raise_instead_of_returning_nonsense(
    x: list[int], t_x: list[float], T: list[float]
) -> None:
    with pytest.raises(ClvFitError, match="keep the previous parameters"):
        BGNBD.fit(x, t_x, T)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([1, 2], [5.0, 12.0], [10.0, 11.0], r"T\[1\] = 11.0: the age T must be >= t_x"),
        ([1, -1], [5.0, 0.0], [10.0, 10.0], r"x\[1\] = -1.0: repeat purchases are a whole"),
        ([1.5], [5.0], [10.0], r"x\[0\] = 1.5: repeat purchases are a whole"),
        ([1], [float("nan")], [10.0], r"t_x\[0\] = nan: must be a finite number"),
        ([1], [-1.0], [10.0], r"t_x\[0\] = -1.0: the last purchase cannot come before"),
    ],
)
def test_impossible_histories_are_refused_by_name(
    x: list[float], t_x: list[float], T: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BGNBD.fit(x, t_x, T)
    with pytest.raises(ValueError, match=message):
        PUBLISHED_BGNBD.p_alive(x, t_x, T)


def test_a_negative_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match=r"t = -1.0: the horizon must be >= 0"):
        PUBLISHED_BGNBD.expected_purchases(-1.0, 1, 5.0, 10.0)


def test_parameters_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"BGNBDParams.alpha = 0.0: must be a finite number > 0"):
        BGNBDParams(r=0.2, alpha=0.0, a=0.8, b=2.4)


# --- Gamma-Gamma ---------------------------------------------------------------------------

# The lifetimes documentation's fit of the same file (two decimals).
PUBLISHED_GAMMA_GAMMA = (6.25, 3.74, 15.45)


@pytest.fixture(scope="module")
def cdnow_spend() -> tuple[FloatArray, FloatArray]:
    """x and the average repeat-transaction value (dollars) of the 2357 CDNOW customers."""
    data = cdnow("cdnow_customers_summary_with_transactions.csv")
    assert data.shape == (2357, 4)
    return data[:, 0], data[:, 3]


def test_cdnow_gamma_gamma_reproduces_the_published_parameters(
    cdnow_spend: tuple[FloatArray, FloatArray],
) -> None:
    x, m = cdnow_spend
    assert int((x > 0).sum()) == 946  # the customers with an average to learn from
    fitted = GammaGamma.fit(x, m)  # x = 0 rows are left out by the fit itself
    assert (round(fitted.p, 2), round(fitted.q, 2), round(fitted.v, 2)) == PUBLISHED_GAMMA_GAMMA
    again = GammaGamma.fit(x, m, start=GammaGammaParams(*PUBLISHED_GAMMA_GAMMA))
    assert (again.p, again.q, again.v) == pytest.approx((fitted.p, fitted.q, fitted.v), rel=1e-5)
    in_cents = GammaGamma.fit(x, m * 100)
    assert in_cents.v == pytest.approx(fitted.v * 100, rel=1e-5)
    assert (in_cents.p, in_cents.q) == pytest.approx((fitted.p, fitted.q), rel=1e-5)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0.1, max_value=50.0),
    st.floats(min_value=1.01, max_value=50.0),
    st.floats(min_value=0.01, max_value=1e4),
    st.integers(min_value=1, max_value=1000),
    st.floats(min_value=0.0, max_value=1e5),
)
def test_expected_spend_lies_between_the_population_mean_and_the_own_average(
    p: float, q: float, v: float, x: int, m: float
) -> None:
    params = GammaGammaParams(p=p, q=q, v=v)
    population = float(params.expected_spend(0, m))
    assert population == pytest.approx(p * v / (q - 1))
    own = float(params.expected_spend(x, m))
    low, high = min(population, m), max(population, m)
    assert low * (1 - 1e-12) <= own <= high * (1 + 1e-12)
    # more transactions, more weight on the customer's own average (within a rounding
    # error of m: when the population mean equals m, both distances are float noise)
    slack = 1e-12 * max(m, 1.0)
    assert abs(float(params.expected_spend(x + 1, m)) - m) <= abs(own - m) * (1 + 1e-12) + slack


def simulate_spend(
    p: float, q: float, v: float, n: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """x transactions per customer and their average, drawn from the Gamma-Gamma story."""
    x = rng.integers(1, 11, n).astype(np.float64)
    nu = rng.gamma(q, 1.0 / v, n)
    # the mean of x Gamma(p, nu) values is Gamma(p x, nu x)
    return x, rng.gamma(p * x, 1.0 / (nu * x))


def test_a_simulated_spend_distribution_gives_back_its_parameters() -> None:
    true = GammaGammaParams(p=6.0, q=4.0, v=15.0)
    fitted = GammaGamma.fit(*simulate_spend(6.0, 4.0, 15.0, 20_000, np.random.default_rng(2013)))
    # ~3.5 standard errors (measured over seeds): p and v trade off against each other,
    # while q and the population's mean spend p v / (q - 1) are pinned down tightly
    assert fitted.p == pytest.approx(true.p, rel=0.2)
    assert fitted.v == pytest.approx(true.v, rel=0.25)
    assert fitted.q == pytest.approx(true.q, rel=0.05)
    mean_spend = float(fitted.expected_spend(0, 0))
    assert mean_spend == pytest.approx(float(true.expected_spend(0, 0)), rel=0.015)


def test_spend_too_heavy_tailed_for_a_mean_is_refused() -> None:
    # q = 0.7: the customers' mean spends p / nu have no population mean
    x, heavy = simulate_spend(3.0, 0.7, 15.0, 5_000, np.random.default_rng(7))
    with pytest.raises(ClvFitError, match=r"q = .* <= 1 means an infinite mean spend"):
        GammaGamma.fit(x, heavy)
    with pytest.raises(ValueError, match=r"q = 1.0: must be > 1"):
        GammaGammaParams(p=3.0, q=1.0, v=15.0)


def test_spend_without_repeat_purchases_cannot_be_fitted() -> None:
    with pytest.raises(ClvFitError, match="no customer has a repeat purchase"):
        GammaGamma.fit([0, 0], [20.0, 30.0])


def test_a_repeat_buyer_with_a_zero_average_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"m\[1\] = 0.0: a customer with repeat purchases"):
        GammaGamma.fit([2, 3, 0], [20.0, 0.0, 0.0])


# --- lifetime value from profiles ----------------------------------------------------------

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, epoch ms


def test_the_public_surface_changes_only_on_purpose() -> None:
    assert sorted(clv.__all__) == [
        "BGNBD",
        "BGNBDParams",
        "ClvFitError",
        "ClvPrediction",
        "CustomerSummary",
        "GammaGamma",
        "GammaGammaParams",
        "LifetimeValue",
        "summary_from_profile",
    ]


def summary_of(profile: Profile, as_of: int) -> CustomerSummary | None:
    return summary_from_profile(
        profile.orders, profile.first_order_at, profile.last_order_at, profile.revenue, as_of
    )


def test_a_profile_becomes_repeat_orders_days_and_its_average_order() -> None:
    profile = Profile(
        id="C-1",
        orders=4,
        revenue=200.0,
        first_order_at=T0,
        last_order_at=T0 + 45 * DAY + DAY // 2,
    )
    assert summary_of(profile, as_of=T0 + 90 * DAY) == CustomerSummary(
        x=3, t_x=45.5, T=90.0, m=50.0
    )


def test_orders_count_even_on_the_same_day_unlike_cdnow_purchase_days() -> None:
    same_moment = Profile(id="C-1", orders=2, revenue=30.0, first_order_at=T0, last_order_at=T0)
    assert summary_of(same_moment, as_of=T0 + DAY) == CustomerSummary(x=1, t_x=0.0, T=1.0, m=15.0)


def test_a_profile_without_orders_is_not_yet_a_customer_to_value() -> None:
    assert summary_of(Profile(id="a-1", events=12), as_of=T0) is None


@pytest.mark.parametrize(
    ("orders", "first", "last", "revenue", "as_of", "message"),
    [
        (2, T0, T0 + DAY, 10.0, T0, "must be in this order"),  # as_of before the last order
        (2, T0 + DAY, T0, 10.0, T0 + DAY, "must be in this order"),
        (1, None, None, 10.0, T0, "a profile with orders has both times"),
        (1, T0, T0, -5.0, T0, r"revenue = -5.0: must be >= 0"),
        (-1, None, None, 0.0, T0, r"orders = -1: must be >= 0"),
    ],
)
def test_inconsistent_profile_fields_are_refused_by_name(
    orders: int, first: int | None, last: int | None, revenue: float, as_of: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        summary_from_profile(orders, first, last, revenue, as_of)


CDNOW_IN_DAYS = LifetimeValue(
    purchases=BGNBDParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426),
    spend=GammaGammaParams(p=6.25, q=3.74, v=15.45),
)


def test_value_is_expected_purchases_times_expected_spend_per_customer() -> None:
    x, t_x, T, m = np.array([0, 1, 5]), np.array([0.0, 20.0, 80.0]), 90.0, np.array([40, 25, 60])
    prediction = CDNOW_IN_DAYS.predict(x, t_x, T, m, horizon=365)
    assert prediction.p_alive[0] == 1.0
    assert np.all(prediction.p_alive[1:] < 1.0)
    spend = CDNOW_IN_DAYS.spend.expected_spend(x + 1, m)
    assert prediction.expected_value == pytest.approx(prediction.expected_purchases * spend)
    longer = CDNOW_IN_DAYS.predict(x, t_x, T, m, horizon=730)
    assert np.all(longer.expected_value > prediction.expected_value)


def test_parameters_survive_pickle_and_json_as_the_worker_stores_them() -> None:
    assert pickle.loads(pickle.dumps(CDNOW_IN_DAYS)) == CDNOW_IN_DAYS
    blob = msgspec.json.encode(CDNOW_IN_DAYS)
    assert msgspec.json.decode(blob, type=LifetimeValue) == CDNOW_IN_DAYS
    tampered = blob.replace(b'"q":3.74', b'"q":0.5')
    with pytest.raises(msgspec.ValidationError, match="must be > 1"):
        msgspec.json.decode(tampered, type=LifetimeValue)


def test_a_simulated_shop_is_valued_from_its_profiles() -> None:
    """Orders and order values drawn from the models, seen only as profile fields.

    Each order's value is Gamma(p, nu) around the customer's own mean. The fit from the
    engine's summaries must give back the spend parameters (which it can only if the
    average of x + 1 orders is read as such), and the value predicted for the next 180
    days must match the revenue the simulated customers then bring.
    """
    rng = np.random.default_rng(42)
    as_of = T0 + 800 * DAY
    age = rng.uniform(30.0, 720.0, 30_000)
    shop = simulate_bgnbd(TRUE_BGNBD, age, 180.0, rng)
    nu = rng.gamma(4.0, 1.0 / 15.0, age.size)  # true spend: p=6, q=4, v=15
    revenue = rng.gamma(6.0 * (shop.x + 1), 1.0 / nu)
    future_revenue = rng.gamma(6.0 * np.maximum(shop.future, 1), 1.0 / nu) * (shop.future > 0)
    first = as_of - np.round(age * DAY).astype(np.int64)
    last = first + np.round(shop.t_x * DAY).astype(np.int64)
    summaries = [
        summary_from_profile(int(orders), int(f), int(la), float(r), as_of)
        for orders, f, la, r in zip(shop.x + 1, first, last, revenue, strict=True)
    ]
    x, t_x, T, m = (np.array(column) for column in zip(*summaries, strict=True))

    fitted = LifetimeValue.fit(x, t_x, T, m)
    assert (fitted.spend.p, fitted.spend.q, fitted.spend.v) == pytest.approx(
        (6.0, 4.0, 15.0), rel=0.1
    )
    predicted = fitted.predict(x, t_x, T, m, horizon=180.0)
    assert predicted.expected_purchases.sum() == pytest.approx(shop.future.sum(), rel=0.03)
    # ~4 standard errors over seeds: the revenue of a few heavy buyers dominates the sum
    assert predicted.expected_value.sum() == pytest.approx(future_revenue.sum(), rel=0.08)
    again = LifetimeValue.fit(x, t_x, T, m, start=fitted)
    assert again.spend.q == pytest.approx(fitted.spend.q, rel=1e-5)


def test_a_refit_leaves_refunded_customers_out_of_the_spend_model_only() -> None:
    rng = np.random.default_rng(3)
    shop = simulate_bgnbd(TRUE_BGNBD, rng.uniform(30.0, 720.0, 3_000), 0.0, rng)
    m = rng.gamma(6.0, 5.0, shop.x.size)
    m[:10] = 0.0  # refunded in full: net revenue 0
    fitted = LifetimeValue.fit(shop.x, shop.t_x, shop.T, m)
    assert fitted.purchases == BGNBD.fit(shop.x, shop.t_x, shop.T)
    assert fitted.spend == GammaGamma.fit(shop.x[10:] + 1, m[10:])
