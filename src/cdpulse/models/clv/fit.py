"""Maximum likelihood for the lifetime-value models: checked inputs, the optimiser, its error.

BG/NBD and Gamma-Gamma both have strictly positive parameters. They are fitted on the
logarithms of the parameters, so the optimiser moves on an unconstrained scale, with
L-BFGS-B bounds wide enough never to bind at a real optimum and narrow enough to keep
``exp`` finite: a fit that ends on a bound has no finite maximum, and says so.

A fit that fails raises :class:`ClvFitError` and returns nothing: the caller (the learner's
periodic refit) keeps serving the parameters it already has.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import optimize  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]

# The objective: mean negative log-likelihood and its gradient, both in log-parameters.
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# Log-parameters live in [-12, 12] once the data are rescaled to order one (e^12 ≈ 1.6e5).
# Real customer bases sit well inside (CDNOW: within ±3); an estimate that runs into this
# wall is heading for 0 or infinity, as when every history is alike (no heterogeneity).
LOG_BOUND = 12.0

# A mean log-likelihood whose gradient is this flat is at its maximum. The optimiser's
# own verdict is not used: L-BFGS-B reports "abnormal termination in line search" when
# it sits on the optimum and rounding stops further progress.
GRADIENT_TOLERANCE = 1e-6


class ClvFitError(Exception):
    """A lifetime-value model cannot be fitted to these data; keep the previous parameters."""


def column(name: str, values: npt.ArrayLike) -> FloatArray:
    """``values`` as a float array, refusing NaN and infinities by name and position."""
    array = np.asarray(values, dtype=np.float64)
    first_where(name, ~np.isfinite(array), array, "must be a finite number")
    return array


def first_where(name: str, bad: npt.NDArray[np.bool_], values: FloatArray, rule: str) -> None:
    """Raise naming the first element of ``values`` where ``bad`` holds, and the rule broken."""
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = "" if not where else "[" + ", ".join(map(str, where)) + "]"
        raise ValueError(f"{name}{index} = {values[where]}: {rule}")


def maximise_likelihood(model: str, objective: Objective, start: FloatArray) -> FloatArray:
    """The log-parameters that maximise a likelihood, or :class:`ClvFitError`."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    result = optimize.minimize(
        objective,
        np.clip(start, -LOG_BOUND, LOG_BOUND),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
    )
    estimate = np.asarray(result.x, dtype=np.float64)
    value, gradient = objective(estimate)
    if np.any(np.abs(estimate) >= LOG_BOUND - 1e-3):
        raise ClvFitError(
            f"{model}: the likelihood has no finite maximum on these data (a parameter runs to "
            f"0 or infinity: log-parameters {np.round(estimate, 2).tolist()}); fit on more "
            "customers, or keep the previous parameters"
        )
    if not np.isfinite(value) or np.max(np.abs(gradient)) > GRADIENT_TOLERANCE:
        raise ClvFitError(
            f"{model}: the fit did not converge (gradient {np.abs(gradient).max():.2g} after "
            f"{result.nit} iterations; optimiser: {result.message.strip(': ')}); fit on more "
            "customers, or keep the previous parameters"
        )
    return estimate
