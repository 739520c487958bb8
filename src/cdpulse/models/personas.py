"""Personas: customers clustered online by how they buy, with stable ids and descriptions.

Each customer is a point of ``FEATURES`` read from their profile (``persona_features``),
standardised with running means and variances. The clustering is sequential k-means
(MacQueen): the first ``k`` distinct points seeded by k-means++ over a warm-up buffer,
then each point moves its nearest centre by 1 / (points it has seen). Plain numpy, one
point at a time, deterministic: a replay learns the same centres. River's ``KMeans``
starts from random centres and moves them by a fixed half-life; it was not measured here.

A snapshot (``PersonaModel.snapshot``) numbers its personas so that each keeps its id
across refits: the new centres are matched to the previous snapshot's by the assignment
that minimises the total distance (``scipy.optimize.linear_sum_assignment``). Each
persona is described by how its centre differs from the population, in words.

>>> model = PersonaModel(k=2, warmup=4)
>>> for orders in (0, 0, 0, 9, 9, 9, 0, 9):
...     model.learn_one({**dict.fromkeys(FEATURES, 0.0), "orders": float(orders)})
>>> snapshot = model.snapshot()
>>> sorted((p.size, p.description) for p in snapshot.personas)
[(4, 'orders above average'), (4, 'orders below average')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY

FEATURES = (
    "recency_days",
    "orders",
    "net_revenue",
    "average_order_value",
    "sessions",
    "app_share",
    "email_share",
    "offer_use",
)
# The words for a feature well above / below the population (|z| of the centre).
_WORDS = {
    "recency_days": ("long quiet", "active lately"),
    "orders": ("orders", "orders"),
    "net_revenue": ("spend", "spend"),
    "average_order_value": ("orders big baskets", "orders small baskets"),
    "sessions": ("visits often", "visits rarely"),
    "app_share": ("mostly in the app", "mostly on the web"),
    "email_share": ("reads email", "ignores email"),
    "offer_use": ("redeems offers", "ignores offers"),
}
_COUNTED = ("orders", "net_revenue", "average_order_value", "sessions", "recency_days")

FloatArray = npt.NDArray[np.float64]


def persona_features(profile: Profile, as_of: int) -> dict[str, float]:
    """The persona features of ``profile`` at ``as_of``; counts and money are log1p'd, so
    a few big spenders do not pull every centre."""
    events = max(profile.events, 1)
    shown = profile.counts.get("offer_shown", 0)
    net = max(0.0, profile.revenue - profile.refunded)
    raw = {
        "recency_days": max(0, as_of - profile.last_seen) / DAY,
        "orders": float(profile.orders),
        "net_revenue": net,
        "average_order_value": net / profile.orders if profile.orders else 0.0,
        "sessions": float(profile.sessions_closed + len(profile.spans)),
        "app_share": profile.channels.get("app", 0) / events,
        "email_share": profile.channels.get("email", 0) / events,
        "offer_use": profile.counts.get("offer_redeemed", 0) / shown if shown else 0.0,
    }
    for name in _COUNTED:
        raw[name] = math.log1p(raw[name])
    return raw


@dataclass(frozen=True, slots=True)
class Persona:
    """One persona of a snapshot: its stable id, size, centre and words."""

    id: int
    size: int  # points it has learned from
    centre: dict[str, float]  # in standard deviations from the population mean
    description: str


@dataclass(frozen=True, slots=True)
class PersonaSnapshot:
    """The published personas: centres in standardised space, and the scaling used."""

    version: int
    personas: tuple[Persona, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def assign(self, x: Mapping[str, float]) -> int:
        """The id of the persona nearest to the features ``x``."""
        z = (_vector(x) - np.array(self.mean)) / np.array(self.scale)
        centres = np.array([[p.centre[f] for f in FEATURES] for p in self.personas])
        return self.personas[int(np.argmin(((centres - z) ** 2).sum(axis=1)))].id


class PersonaModel:
    """Sequential k-means over standardised persona features (see the module docstring)."""

    def __init__(self, k: int = 6, warmup: int = 200, seed: int = 0) -> None:
        if k < 2 or warmup < k:
            raise ValueError(f"k must be >= 2 and warmup >= k, got k={k}, warmup={warmup}")
        self.k, self.warmup, self.seed = k, warmup, seed
        self.n = 0
        self.mean = np.zeros(len(FEATURES))
        self.m2 = np.zeros(len(FEATURES))
        self.buffer: list[FloatArray] = []
        self.centres: FloatArray | None = None  # in raw feature space
        self.counts = np.zeros(k, dtype=np.int64)
        self.previous: PersonaSnapshot | None = None

    def learn_one(self, x: Mapping[str, float]) -> None:
        v = _vector(x)
        self.n += 1
        delta = v - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (v - self.mean)
        if self.centres is None:
            self.buffer.append(v)
            if len(self.buffer) >= self.warmup:
                self._seed()
            return
        nearest = int(np.argmin((((self.centres - v) / self._scale()) ** 2).sum(axis=1)))
        self.counts[nearest] += 1
        self.centres[nearest] += (v - self.centres[nearest]) / self.counts[nearest]

    def snapshot(self) -> PersonaSnapshot | None:
        """The personas now, ids matched to the last snapshot's; None before any centre."""
        if self.centres is None and len(self.buffer) >= self.k:
            self._seed()
        if self.centres is None:
            return None
        scale = self._scale()
        z = (self.centres - self.mean) / scale
        order = list(range(self.k))
        if self.previous is not None:
            old = np.array([[p.centre[f] for f in FEATURES] for p in self.previous.personas])
            rows, cols = linear_sum_assignment(((z[:, None, :] - old[None, :, :]) ** 2).sum(2))
            ids = [0] * self.k
            for row, col in zip(rows, cols, strict=True):
                ids[int(row)] = self.previous.personas[int(col)].id
        else:
            ids = order
        personas = tuple(
            sorted(
                (
                    Persona(
                        ids[i],
                        int(self.counts[i]),
                        {f: round(float(z[i][j]), 4) for j, f in enumerate(FEATURES)},
                        describe(z[i]),
                    )
                    for i in order
                ),
                key=lambda p: p.id,
            )
        )
        version = self.previous.version + 1 if self.previous else 1
        self.previous = PersonaSnapshot(
            version, personas, tuple(self.mean.tolist()), tuple(scale.tolist())
        )
        return self.previous

    def _scale(self) -> FloatArray:
        std: FloatArray = np.sqrt(self.m2 / max(self.n - 1, 1))
        return np.where(std > 1e-9, std, 1.0)

    def _seed(self) -> None:
        """k-means++ over the warm-up buffer: spread-out first centres."""
        points = np.array(self.buffer)
        scale = self._scale()
        rng = np.random.default_rng(self.seed)
        chosen = [int(rng.integers(len(points)))]
        for _ in range(1, self.k):
            d = np.min([(((points - points[c]) / scale) ** 2).sum(axis=1) for c in chosen], axis=0)
            total = d.sum()
            chosen.append(int(rng.choice(len(points), p=d / total)) if total > 0 else len(chosen))
        self.centres = points[chosen].copy()
        nearest = np.argmin(
            (((points[:, None, :] - self.centres[None, :, :]) / scale) ** 2).sum(axis=2), axis=1
        )
        self.counts = np.bincount(nearest, minlength=self.k).astype(np.int64)
        self.buffer = []


def describe(z: Sequence[float] | FloatArray) -> str:
    """Words for the (at most three) features where a centre is furthest from the mean,
    0.5 standard deviations at least: 'mostly in the app, orders far above average'."""
    ranked = sorted(range(len(FEATURES)), key=lambda j: (-abs(float(z[j])), j))
    words = []
    for j in ranked[:3]:
        value = float(z[j])
        if abs(value) < 0.5:
            break
        name = FEATURES[j]
        high, low = _WORDS[name]
        if high == low:  # a quantity: say how far from the average
            far = "far " if abs(value) >= 1.5 else ""
            words.append(f"{high} {far}{'above' if value > 0 else 'below'} average")
        else:
            words.append(high if value > 0 else low)
    return ", ".join(words) or "close to the average customer"


def _vector(x: Mapping[str, float]) -> FloatArray:
    return np.array([float(x[name]) for name in FEATURES])
