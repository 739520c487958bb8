"""The ranker: a logistic regression over the candidate sources, learned online.

Pointwise learning from implicit feedback: each product a customer views, adds or buys
is a positive example weighted by its level (1, 2, 3), and ``negatives`` candidates it
did not pick are negative examples (see ``examples``). So the model learns how much each
source (co-visitation, category, trending, the customer's own recent views) predicts
the next product.

The model is River's ``StandardScaler | LogisticRegression(optimizer=SGD(lr))``,
computed here over the seven features as a tuple: the same arithmetic (Welford's running
mean and variance, the scaler learning before it transforms, log-loss gradient, intercept
rate 0.01), at a fifth of the cost of River's dict-based pipeline (~2 µs an example
instead of ~10); a test holds it to River's own pipeline on random examples. To score a
few hundred candidates fast, the scaler is folded into the weights (``Folded``).

A candidate's score is those log-odds plus its *prior*, the plain sum of its source
shares: before the first example the prior alone ranks; afterwards it breaks ties.

Learners that each hold some customers (shards) each learn a ``Ranker``; serving
averages their folded coefficients, weighted by the examples each learned
(``Folded.average``: parameter averaging, the usual way to combine SGD learners).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mypy_extensions import mypyc_attr

from cdpulse.models.reco.candidates import Candidate
from cdpulse.models.reco.config import RecoConfig

FEATURES = (
    "covisitation",
    "category",
    "affinity",
    "category_share",
    "popularity",
    "viewed",
    "in_cart",
)
# the source a reason names, per feature
SOURCES = ("covisitation", "category", "category", "category", "trending", "viewed", "cart")
INTERCEPT_RATE = 0.01  # River's LogisticRegression default (``intercept_lr``)
CLIP = 1e12  # River's ``clip_gradient`` default


def vector(c: Candidate) -> tuple[float, ...]:
    """The ranker's input for one candidate, in ``FEATURES`` order."""
    return (
        c.covisitation,
        c.affinity * c.category_share,
        c.affinity,
        c.category_share,
        c.popularity,
        c.viewed,
        float(c.in_cart),
    )


def prior(x: Sequence[float]) -> float:
    """The sources' own score: co-visitation, category, trending and viewed shares."""
    return x[0] + x[1] + x[4] + x[5]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example: a candidate's ``vector``, whether it was picked, its weight."""

    x: tuple[float, ...]
    y: bool
    weight: float


# Pickled in recommender snapshots: an ordinary class when compiled (``setup.py``), so
# its pickles are the same in either build.
@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class Folded:
    """A ranker for scoring: weights on raw (unscaled) features, intercept, feature means.

    >>> a = Folded((1.0,) * 7, 0.0, (0.0,) * 7, learned=3)
    >>> b = Folded((3.0,) * 7, 2.0, (1.0,) * 7, learned=1)
    >>> Folded.average([a, b]).weights[0], Folded.average([a, b]).intercept
    (1.5, 0.5)
    """

    weights: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    learned: int

    @classmethod
    def average(cls, folded: Sequence[Folded]) -> Folded:
        """The average of shard rankers, weighted by the examples each learned.

        One ranker (or one that learned everything) is returned as it is, exactly.
        """
        if not folded:
            raise ValueError("Folded.average needs at least one ranker")
        learned = sum(f.learned for f in folded)
        if learned == 0:
            return folded[0]
        shares = [f.learned / learned for f in folded]
        if max(shares) == 1.0:
            return folded[shares.index(1.0)]

        weights = zip(*(f.weights for f in folded), strict=True)
        means = zip(*(f.means for f in folded), strict=True)
        return cls(
            tuple(_mix(shares, column) for column in weights),
            _mix(shares, [f.intercept for f in folded]),
            tuple(_mix(shares, column) for column in means),
            learned,
        )

    def folded(self) -> Folded:
        return self

    def with_prior(self) -> tuple[float, ...]:
        """The intercept, then the weight of each ``vector`` feature with the prior's
        folded in: what a score multiplies a candidate's features by."""
        w0, w1, w2, w3, w4, w5, w6 = self.weights
        # the prior's features count once more
        return (self.intercept, w0 + 1.0, w1 + 1.0, w2, w3, w4 + 1.0, w5 + 1.0, w6)

    def scores(self, vectors: Iterable[Sequence[float]]) -> list[float]:
        """Per candidate ``vector``: the log-odds that it is the customer's next product,
        plus its prior."""
        b, w0, w1, w2, w3, w4, w5, w6 = self.with_prior()
        return [
            b + w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3 + w4 * x4 + w5 * x5 + w6 * x6
            for x0, x1, x2, x3, x4, x5, x6 in vectors
        ]

    def reason_sources(self, c: Candidate) -> list[str]:
        """The sources by how much they lifted ``c`` above an average candidate, most first."""
        x = vector(c)
        if not self.learned:  # nothing learned yet: the prior's largest share
            lifts = [
                (-x[0], "covisitation"),
                (-x[1], "category"),
                (-x[4], "trending"),
                (-x[5], "viewed"),
            ]
        else:
            # Summed per source in ``SOURCES`` order, from 0.0 as a dict of sums would be.
            w, m = self.weights, self.means
            category = 0.0 + w[1] * (x[1] - m[1])
            category = category + w[2] * (x[2] - m[2])
            category = category + w[3] * (x[3] - m[3])
            lifts = [
                (-(0.0 + w[0] * (x[0] - m[0])), "covisitation"),
                (-category, "category"),
                (-(0.0 + w[4] * (x[4] - m[4])), "trending"),
                (-(0.0 + w[5] * (x[5] - m[5])), "viewed"),
                (-(0.0 + w[6] * (x[6] - m[6])), "cart"),
            ]
        # Most lift first, ties by name: tuples compare in C, no key function.
        lifts.sort()
        return [source for _, source in lifts]


def _mix(shares: Sequence[float], values: Sequence[float]) -> float:
    """The average of ``values`` weighted by ``shares``."""
    return sum(s * v for s, v in zip(shares, values, strict=True))


class Scorer(Protocol):
    """What recommending needs of a ranker: a learning one or an average of shards'."""

    @property
    def learned(self) -> int: ...

    def folded(self) -> Folded: ...


@mypyc_attr(native_class=False)  # pickled in recommender snapshots, as Folded
class Ranker:
    """Learns which candidate sources predict the customer's next product."""

    def __init__(self, config: RecoConfig) -> None:
        n = len(FEATURES)
        self.learning_rate = config.learning_rate
        self.count = 0
        self.means = [0.0] * n
        self.vars = [0.0] * n
        self.weights = [0.0] * n
        self.intercept = 0.0
        self.learned = 0
        self._folded: Folded | None = None

    def score_one(self, x: Sequence[float]) -> float:
        """The score serving gives the candidate ``x`` now (``Folded.scores``: log-odds plus
        the prior), without folding: what the drift of the ranker's output reads."""
        z = self.intercept + prior(x)
        for w, xi, mean, v in zip(self.weights, x, self.means, self.vars, strict=True):
            if v > 0:
                z += w * (xi - mean) / math.sqrt(v)
        return z

    def learn_one(self, example: Example) -> None:
        """Learn from one example: the scaler first, then one SGD step on the scaled x."""
        means, variances, weights = self.means, self.vars, self.weights
        self.count += 1
        n = self.count
        z = []
        for i, xi in enumerate(example.x):
            old = means[i]
            mean = means[i] = old + (xi - old) / n
            v = variances[i] = variances[i] + ((xi - old) * (xi - mean) - variances[i]) / n
            z.append((xi - mean) / v**0.5 if v else 0.0)
        raw = 0.0
        for wi, zi in zip(weights, z, strict=True):
            raw += wi * zi
        raw += self.intercept
        # River's log loss: labels as -1 / 1, its gradient with respect to the raw score
        sign = 1 if example.y else -1
        margin = raw * sign
        if margin > 18.0:
            gradient = math.exp(-margin) * -sign
        elif margin < -18.0:
            gradient = float(-sign)
        else:
            gradient = -sign / (math.exp(margin) + 1.0)
        gradient = min(max(gradient * example.weight, -CLIP), CLIP)
        self.intercept -= INTERCEPT_RATE * gradient
        rate = self.learning_rate
        for i, zi in enumerate(z):
            weights[i] -= rate * (zi * gradient)
        self.learned += 1
        self._folded = None

    def folded(self) -> Folded:
        """Weights on raw (unscaled) features and the intercept, with the feature means."""
        if self._folded is None:
            weights = []
            intercept = self.intercept
            for w, mean, v in zip(self.weights, self.means, self.vars, strict=True):
                sd = math.sqrt(v)
                # River's scaler maps a feature it has seen constant to 0
                weights.append(w / sd if sd > 0 else 0.0)
                if sd > 0:
                    intercept -= w * mean / sd
            self._folded = Folded(tuple(weights), intercept, tuple(self.means), self.learned)
        return self._folded
