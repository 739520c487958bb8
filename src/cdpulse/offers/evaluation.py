"""Off-line evaluation of an offer policy on logged outcomes, by inverse propensity weighting.

Every reward on ``cdp.offer-rewards`` carries the context, the offer sent, the
probability the logging policy had of sending it, and whether the customer converted.
A candidate policy is then valued without sending anything: each logged outcome counts
with weight P_candidate(offer | context) / P_logged(offer | context).

>>> logs = [Reward("cart", "a", {}, 1.0, 0.5, "t1"), Reward("cart", "b", {}, 0.0, 0.5, "t2")]
>>> always_a = lambda rule, offers, features: {"a": 1.0}
>>> estimate(logs, always_a, ["a", "b"])
{'ips': 1.0, 'snips': 1.0, 'logged': 0.5, 'n': 2}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cdpulse.offers.bandit import Reward

# (rule, offers, features) -> offer -> probability; offers left out have probability 0.
Candidate = Callable[[str, list[str], dict[str, float]], dict[str, float]]


def estimate(
    logs: Iterable[Reward], candidate: Candidate, offers: list[str]
) -> dict[str, float | int | None]:
    """The candidate's expected reward per firing (IPS and self-normalised IPS), and the
    logging policy's own average, over ``logs``."""
    weighted = weights = logged = 0.0
    n = 0
    for log in logs:
        if not 0 < log.propensity <= 1:
            raise ValueError(
                f"reward of {log.trigger_id}: propensity must be in (0, 1], got {log.propensity}"
            )
        weight = candidate(log.rule, offers, log.features).get(log.offer, 0.0) / log.propensity
        weighted += weight * log.reward
        weights += weight
        logged += log.reward
        n += 1
    if n == 0:
        return {"ips": None, "snips": None, "logged": None, "n": 0}
    return {
        "ips": round(weighted / n, 6),
        "snips": round(weighted / weights, 6) if weights else None,
        "logged": round(logged / n, 6),
        "n": n,
    }
