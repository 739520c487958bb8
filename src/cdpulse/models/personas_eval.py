"""Evaluation of personas against batch k-means: ``cdpulse evaluate personas``.

The examples are the ones the worker's pipeline decides from a replayed file
(``pipeline/persona_replay.py``), learned in the order the worker publishes them, by the
learner the live learner runs. Then, on the newest points learned (the sample the
learner's /metrics measure, ``personas_learner.quality``):

* silhouette (Euclidean, standardised space) of the nearest-persona assignment, beside
  batch k-means (Lloyd's, k-means++ seeded) run on the same points;
* stability: the share of those points the snapshot at two thirds of the examples and
  the last put in the same persona id (ids carried by matching), beside batch k-means
  run on the sample as it was at two thirds and at the end, its clusters matched the
  same way; and the learner's own checkpoint-to-checkpoint stability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from cdpulse.models.personas import FloatArray
from cdpulse.models.personas_labels import PersonaExample
from cdpulse.models.personas_learner import PersonaLearner, quality, silhouette


@dataclass(frozen=True, slots=True)
class PersonaResult:
    examples: int
    points: int
    k: int
    silhouette: float
    baseline_silhouette: float
    stability: float
    baseline_stability: float
    checkpoint_stability: float | None
    sizes: dict[int, int]
    descriptions: dict[int, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    examples: list[PersonaExample], k: int = 5, warmup: int = 200, every: int = 500
) -> PersonaResult | None:
    """Learn ``examples`` in order and measure the personas (see the module docstring);
    None when there are too few to seed ``k`` personas."""
    learner = PersonaLearner.fresh(k=k, warmup=warmup, every=every)
    cut = len(examples) * 2 // 3
    learner.learn(list(enumerate(examples[:cut])))
    early = learner.model.view()
    early_sample = np.array(list(learner.model.recent))
    learner.learn(list(enumerate(examples[cut:], cut)))
    model = learner.model
    final, measured = model.view(), quality(model)
    if final is None or early is None or measured is None or len(early_sample) < k:
        return None
    points = model.recent_points()
    z = np.array([final.standardise(x) for x in points])
    mean, scale = np.array(final.mean), np.array(final.scale)
    labels = np.array([final.assign(x) for x in points])
    before = np.array([early.assign(x) for x in points])
    batch = _lloyd(z, k)
    return PersonaResult(
        examples=len(examples),
        points=measured.points,
        k=k,
        silhouette=measured.silhouette,
        baseline_silhouette=round(silhouette(z, _nearest(z, batch)), 4),
        stability=round(float(np.mean(labels == before)), 4),
        baseline_stability=round(
            _matched_agreement(z, _lloyd((early_sample - mean) / scale, k), batch), 4
        ),
        checkpoint_stability=measured.stability,
        sizes={p.id: p.size for p in final.personas},
        descriptions={p.id: p.description for p in final.personas},
    )


def _nearest(z: FloatArray, centres: FloatArray) -> Any:
    return np.argmin(((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)


def _lloyd(z: FloatArray, k: int, seed: int = 0, rounds: int = 100) -> FloatArray:
    """Batch k-means: k-means++ seeding, then Lloyd's iterations to a fixed point."""
    rng = np.random.default_rng(seed)
    centres = [z[int(rng.integers(len(z)))]]
    for _ in range(1, k):
        d = np.min([((z - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d.sum()
        centres.append(z[int(rng.choice(len(z), p=d / total))] if total > 0 else z[0])
    c = np.array(centres)
    for _ in range(rounds):
        labels = _nearest(z, c)
        moved = np.array(
            [z[labels == j].mean(axis=0) if (labels == j).any() else c[j] for j in range(k)]
        )
        if np.allclose(moved, c):
            break
        c = moved
    return c


def _matched_agreement(z: FloatArray, first: FloatArray, second: FloatArray) -> float:
    """The share of points two sets of centres put together, clusters matched by distance."""
    rows, cols = linear_sum_assignment(((first[:, None, :] - second[None, :, :]) ** 2).sum(2))
    mapping = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    a = np.array([mapping[int(x)] for x in _nearest(z, first)])
    return float(np.mean(a == _nearest(z, second)))
