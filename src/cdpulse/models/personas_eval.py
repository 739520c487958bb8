"""Evaluation of personas against batch k-means: ``cdpulse evaluate personas``.

Events are replayed in file order with the real profile rules; at each order of a known
customer the persona model learns the customer's features as they are then. At two
thirds of the events and at the end it publishes a snapshot. Every customer with an
order is then assigned by the final snapshot, on their final features:

* silhouette (mean over customers, Euclidean, standardised space) of that assignment,
  beside batch k-means (Lloyd's, k-means++ seeded) run on the same final points;
* stability: the share of customers the two snapshots put in the same persona id (ids
  carried by matching, ``PersonaModel.snapshot``), beside batch k-means run on the
  features at two thirds and at the end, its clusters matched the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from cdpulse.models.personas import FEATURES, FloatArray, PersonaModel, persona_features
from cdpulse.models.replayed import customer_events
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile


@dataclass(frozen=True, slots=True)
class PersonaResult:
    customers: int
    k: int
    silhouette: float
    baseline_silhouette: float
    stability: float
    baseline_stability: float
    descriptions: dict[int, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    events: Iterable[Mapping[str, Any]],
    k: int = 5,
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
) -> PersonaResult | None:
    """Replay ``events`` and measure the personas (see the module docstring)."""
    rules = rules or Rules()
    parsed = customer_events(events, progress)
    model = PersonaModel(k=k)
    profiles: dict[str, Profile] = {}
    cut = len(parsed) * 2 // 3
    early = None
    early_points: FloatArray | None = None
    for n, event in enumerate(parsed):
        customer = event.customer_id
        assert customer is not None
        profile = profiles.setdefault(customer, new_profile(customer))
        apply(profile, event, rules)
        if event.type == "order_completed":
            model.learn_one(persona_features(profile, event.at))
        if n + 1 == cut:
            early = model.snapshot()
            early_points = _points(profiles, event.at)
    final = model.snapshot()
    if final is None or early is None or early_points is None or not parsed:
        return None
    as_of = max(e.at for e in parsed)
    buyers = [p for p in profiles.values() if p.orders]
    points = np.array([[persona_features(p, as_of)[f] for f in FEATURES] for p in buyers])
    mean, scale = np.array(final.mean), np.array(final.scale)
    z = (points - mean) / scale
    labels = np.array([final.assign(persona_features(p, as_of)) for p in buyers])
    before = np.array([early.assign(persona_features(p, as_of)) for p in buyers])
    batch = _lloyd(z, k)
    early_batch = _lloyd((early_points - mean) / scale, k)
    return PersonaResult(
        customers=len(buyers),
        k=k,
        silhouette=round(silhouette(z, labels), 4),
        baseline_silhouette=round(silhouette(z, _nearest(z, batch)), 4),
        stability=round(float(np.mean(labels == before)), 4),
        baseline_stability=round(_matched_agreement(z, early_batch, batch), 4),
        descriptions={p.id: p.description for p in final.personas},
    )


def _points(profiles: Mapping[str, Profile], as_of: int) -> FloatArray:
    rows = [
        [persona_features(p, as_of)[f] for f in FEATURES] for p in profiles.values() if p.orders
    ]
    return np.array(rows)


def silhouette(z: FloatArray, assigned: Any) -> float:
    """The mean silhouette of ``assigned`` labels over the points ``z`` (0 for one cluster)."""
    labels = np.asarray(assigned)
    if len(set(labels.tolist())) < 2:
        return 0.0
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=2))
    scores = []
    for i in range(len(z)):
        own = labels == labels[i]
        if own.sum() <= 1:
            scores.append(0.0)
            continue
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, labels == other].mean() for other in set(labels.tolist()) - {labels[i]})
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def _nearest(z: FloatArray, centres: FloatArray) -> Any:
    return np.argmin(((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)


def _lloyd(z: FloatArray, k: int, seed: int = 0, rounds: int = 100) -> FloatArray:
    """Batch k-means: k-means++ seeding, then Lloyd's iterations to a fixed point."""
    rng = np.random.default_rng(seed)
    centres = [z[int(rng.integers(len(z)))]]
    for _ in range(1, k):
        d = np.min([((z - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(z[int(rng.choice(len(z), p=d / d.sum()))])
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
