"""Permutation importance of a churn model without weights (a forest), measured online.

A feature matters as much as the model's loss grows when it is given a value that says
nothing about the example: another example's. On every ``STRIDE``-th example, before
the model learns it (so on data it has not seen, like its live quality), each feature in
turn takes the value of an earlier example kept in a small ring, and the increase in log
loss over the true features is averaged per feature. Replacing a value by a draw from
its recent marginal is Breiman's permutation, spread over the stream. The ring and the
draws are deterministic, so a replay measures the same importances.

>>> importance = PermutationImportance(("useful", "noise"))
>>> def predict(x): return 0.9 if x["useful"] > 0 else 0.1
>>> for i in range(200):
...     useful = 1.0 if i % 2 else -1.0
...     importance.observe({"useful": useful, "noise": float(i % 7)}, int(useful > 0), predict)
>>> importance.measured, importance.importance()["noise"]
(20, 0.0)
>>> importance.importance()["useful"] > 0.5
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from river import stats

from cdpulse.models.churn.loss import log_loss

STRIDE = 10  # one example in STRIDE is measured: each costs one prediction per feature
RING = 64  # earlier examples whose values stand in


class PermutationImportance:
    """The mean increase in log loss per feature when its value is another example's."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        self.increase = {name: stats.Mean() for name in self.features}
        self.ring: list[dict[str, float]] = []
        self.seen = 0
        self.measured = 0

    def observe(
        self, x: dict[str, float], y: int, predict: Callable[[dict[str, float]], float]
    ) -> None:
        """One labelled example, before the model learns it."""
        self.seen += 1
        if self.ring and self.seen % STRIDE == 0:
            base = log_loss(y, predict(x))
            donor = self.ring[(self.seen // STRIDE) % len(self.ring)]
            for name in self.features:
                self.increase[name].update(log_loss(y, predict(x | {name: donor[name]})) - base)
            self.measured += 1
        if len(self.ring) < RING:
            self.ring.append(dict(x))
        else:
            self.ring[self.seen % RING] = dict(x)

    def importance(self) -> dict[str, float | None]:
        """Each feature's mean increase in log loss; None before any example is measured."""
        if not self.measured:
            return dict.fromkeys(self.features)
        return {name: float(mean.get()) for name, mean in self.increase.items()}
