"""The ranker: a River logistic regression over the candidate sources, learned online.

Pointwise learning from implicit feedback: each product a customer views, adds or buys
is a positive example weighted by its level (1, 2, 3), and ``negatives`` candidates it
did not pick, sampled deterministically, are negative examples. So the model learns how
much each source (co-visitation, category, trending, the customer's own recent views)
predicts the next product. The model is ``StandardScaler | LogisticRegression``; to
score a few hundred candidates fast, the scaler is folded into the weights (``scores``
equal the pipeline's log-odds).

A candidate's score is those log-odds plus its *prior*, the plain sum of its source
shares: before the first example the prior alone ranks; afterwards it breaks ties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from river import linear_model, optim, preprocessing

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


def features(c: Candidate) -> dict[str, float]:
    """The ranker's input for one candidate, as River takes it."""
    return dict(zip(FEATURES, vector(c), strict=True))


def prior(x: tuple[float, ...]) -> float:
    """The sources' own score: co-visitation, category, trending and viewed shares."""
    return x[0] + x[1] + x[4] + x[5]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example: what the learner consumes."""

    x: dict[str, float]
    y: bool
    weight: float


class Ranker:
    """Learns which candidate sources predict the customer's next product."""

    def __init__(self, config: RecoConfig) -> None:
        self.model = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(config.learning_rate)
        )
        self.learned = 0
        self._folded: tuple[tuple[float, ...], float] | None = None

    def learn_one(self, example: Example) -> None:
        """Learn from one example."""
        self.model.learn_one(example.x, example.y, w=example.weight)
        self.learned += 1
        self._folded = None

    def coefficients(self) -> tuple[tuple[float, ...], float]:
        """Weights on raw (unscaled) features, in ``FEATURES`` order, and the intercept."""
        if self._folded is None:
            scaler = self.model["StandardScaler"]
            regression = self.model["LogisticRegression"]
            weights = []
            intercept = float(regression.intercept)
            for name in FEATURES:
                w = regression.weights.get(name, 0.0)
                sd = math.sqrt(scaler.vars.get(name, 0.0))
                # River's scaler maps a feature it has seen constant to 0
                weights.append(w / sd if sd > 0 else 0.0)
                if sd > 0:
                    intercept -= w * scaler.means[name] / sd
            self._folded = tuple(weights), intercept
        return self._folded

    def scores(self, candidates: list[Candidate]) -> list[float]:
        """Per candidate: the log-odds that it is the customer's next product, plus prior."""
        weights, intercept = self.coefficients()
        out = []
        for c in candidates:
            x = vector(c)
            out.append(intercept + sum(w * v for w, v in zip(weights, x, strict=True)) + prior(x))
        return out

    def reason_sources(self, c: Candidate) -> list[str]:
        """The sources by how much they lifted ``c`` above an average candidate, most first."""
        weights, _ = self.coefficients()
        means = self.model["StandardScaler"].means
        x = vector(c)
        lift: dict[str, float] = {}
        for name, source, w, value in zip(FEATURES, SOURCES, weights, x, strict=True):
            lift[source] = lift.get(source, 0.0) + w * (value - means.get(name, 0.0))
        if not self.learned:  # nothing learned yet: the prior's largest share
            lift = {"covisitation": x[0], "category": x[1], "trending": x[4], "viewed": x[5]}
        return sorted(lift, key=lambda source: (-lift[source], source))
