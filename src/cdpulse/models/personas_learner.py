"""The persona learner (examples in topic order), what it publishes, and what is read
from it: a customer's persona, and the live quality of the clustering.

>>> from cdpulse.models.personas import FEATURES
>>> learner = PersonaLearner.fresh(k=2, warmup=4, every=4)
>>> pairs = [(i, PersonaExample("C", i, i, [float(i % 2)] * len(FEATURES))) for i in range(8)]
>>> learner.learn(pairs), learner.snapshot().view.personas[0].size
(8, 4)
"""

from __future__ import annotations

import pickle
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist  # type: ignore[import-untyped]

from cdpulse.models.personas import (
    FloatArray,
    PersonaModel,
    PersonaSnapshot,
    last_order_day,
    persona_features,
)
from cdpulse.models.personas_labels import PersonaExample
from cdpulse.models.reco_stream import Forget
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile

MEMBERS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class PersonaState:
    """A published persona model: the view the api and worker read, and the learner's
    state to resume from."""

    version: int
    view: PersonaSnapshot | None  # None during the warm-up
    model: PersonaModel
    offset: int  # the last topic offset learned: re-delivered examples are skipped
    # the customers (pseudonyms) of the model's newest points, in the same order
    recent: tuple[str, ...] = ()
    quality: PersonaQuality | None = None
    members: dict[int, list[str]] = field(default_factory=dict)  # a few per persona
    # persona id -> share of the distinct customers among ``recent`` (at their newest)
    customer_shares: dict[int, float] = field(default_factory=dict)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


class PersonaLearner:
    """Learns persona examples in topic order; versioned snapshots."""

    def __init__(self, state: PersonaState) -> None:
        self.model = state.model
        self.version = state.version
        self.offset = state.offset
        self.recent: deque[str] = deque(state.recent, maxlen=self.model.recent.maxlen)

    @classmethod
    def fresh(cls, k: int = 5, warmup: int = 200, every: int = 500) -> PersonaLearner:
        return cls(PersonaState(0, None, PersonaModel(k=k, warmup=warmup, every=every), -1))

    def learn(self, examples: list[tuple[int, PersonaExample | Forget]]) -> int:
        """Learn (offset, record) pairs in order; offsets at or below the last are
        skipped. How many changed the state (an example learned, an erased customer
        forgotten)."""
        learned = 0
        for offset, example in examples:
            if offset <= self.offset:
                continue
            self.offset = offset
            if isinstance(example, Forget):
                learned += self.forget(example.forget)
                continue
            self.model.learn_features(example.features)  # no dict per example
            self.recent.append(example.profile_id)
            learned += 1
        return learned

    def forget(self, customer: str) -> int:
        """Drop an erased customer's points from the newest ones kept (their pseudonym,
        the members and shares read from them): 1 if they were there. The centres and
        the running scale are sums over everyone and keep no one's data of their own."""
        if customer not in self.recent:
            return 0
        kept = [
            (c, v) for c, v in zip(self.recent, self.model.recent, strict=True) if c != customer
        ]
        self.recent = deque((c for c, _ in kept), maxlen=self.recent.maxlen)
        self.model.recent = deque((v for _, v in kept), maxlen=self.model.recent.maxlen)
        return 1

    def snapshot(self) -> PersonaState:
        """A new version to publish, with its quality, a few members of each persona (the
        newest customers learned nearest it, by pseudonym) and each persona's share of the
        distinct customers among the newest points, each read at their newest."""
        self.version += 1
        view = self.model.view()
        members: dict[int, list[str]] = {}
        customers: Counter[int] = Counter()
        measured: PersonaQuality | None = None
        if view is not None and self.model.recent:
            # The newest points assigned once, for the quality and the members alike.
            z = view.standardise_all(list(self.model.recent))
            found = view.assign_standardised(z)
            measured = _quality(view, z, found, self.model.stability)
            # Each customer at their newest point: newest first, the first time seen.
            seen: set[str] = set()
            for customer, persona in zip(reversed(self.recent), reversed(found), strict=True):
                if customer in seen:
                    continue
                seen.add(customer)
                customers[persona] += 1
                kept = members.setdefault(persona, [])
                if len(kept) < MEMBERS_SHOWN:
                    kept.append(customer)
        total = sum(customers.values())
        shares = {p: round(n / total, 4) for p, n in sorted(customers.items())}
        return PersonaState(
            self.version,
            view,
            self.model,
            self.offset,
            tuple(self.recent),
            measured,
            members,
            shares,
        )


def persona_of(profile: Profile, state: PersonaState | None) -> dict[str, Any] | None:
    """The customer's persona: the nearest to them as of the end of their last day with an
    order; None without personalization consent (README: consent matrix), before any
    personas, or for a customer with no order in the days kept."""
    if not allows(profile, "personalization") or state is None or state.view is None:
        return None
    day = last_order_day(profile)
    if day is None:
        return None
    view = state.view
    x = persona_features(profile, day)
    found = view.assign(x)
    persona = next(p for p in view.personas if p.id == found)
    return {
        "id": found,
        "description": persona.description,
        "reasons": view.reasons(x),
        "model_version": state.version,
    }


@dataclass(frozen=True, slots=True)
class PersonaQuality:
    """The clustering measured on the newest points learned (``PersonaModel.recent``)."""

    points: int
    silhouette: float  # of the nearest-persona assignment, standardised space
    shares: dict[int, float]  # persona id -> share of those points
    stability: float | None  # share kept in the same persona id between the last checkpoints


def quality(model: PersonaModel) -> PersonaQuality | None:
    """What the learner exports on /metrics and ``cdpulse evaluate personas`` prints."""
    view = model.view()
    if view is None or not model.recent:
        return None
    z = view.standardise_all(list(model.recent))
    return _quality(view, z, view.assign_standardised(z), model.stability)


def _quality(
    view: PersonaSnapshot, z: FloatArray, labels: list[int], stability: float | None
) -> PersonaQuality:
    """The quality of the points ``z`` (standardised) assigned ``labels`` by ``view``."""
    counts = Counter(labels)
    return PersonaQuality(
        points=len(labels),
        silhouette=round(silhouette(z, labels), 4),
        shares={p.id: round(counts[p.id] / len(labels), 4) for p in view.personas},
        stability=None if stability is None else round(stability, 4),
    )


def silhouette(z: Any, assigned: Any) -> float:
    """The mean silhouette of ``assigned`` labels over the points ``z`` (0 for one cluster).

    For each point, ``a`` is its mean distance to the others of its persona, ``b`` the
    smallest mean distance to another persona's points, its score ``(b - a) / max(a, b)``
    (0 alone in its persona). Whole arrays, not a loop per point: the learner measures it
    at every snapshot (~0.2 ms for 256 points, ~6 ms as a loop).
    """
    labels = np.asarray(assigned)
    kinds, index = np.unique(labels, return_inverse=True)
    if len(kinds) < 2:
        return 0.0
    d = cdist(z, z)  # in C: ~15x faster than numpy's points x points x features cube
    rows = np.arange(len(labels))
    members = np.zeros((len(labels), len(kinds)))
    members[rows, index] = 1.0
    sizes = members.sum(axis=0)
    sums = d @ members  # point x persona: the sum of its distances to the persona's points
    own = sizes[index]
    a = sums[rows, index] / np.maximum(own - 1, 1)
    means = sums / sizes
    means[rows, index] = np.inf
    b = means.min(axis=1)
    top = np.maximum(a, b)
    scores = np.where((own > 1) & (top > 0), (b - a) / np.where(top > 0, top, 1.0), 0.0)
    return float(scores.mean())
