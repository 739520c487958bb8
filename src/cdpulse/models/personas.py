"""Personas: customers clustered online by how they buy, with stable ids and descriptions.

Each example is a customer as of the end of a day they ordered on (``persona_features``:
their identified activity per day, ``Profile.churn_days``, over the 60 days ending
then), standardised with running means and variances. The clustering is sequential
k-means (MacQueen): the first ``k`` centres seeded by k-means++ over a warm-up buffer,
then each point moves its nearest centre by 1 / (points it has seen). One point at a
time, deterministic: a replay of the same examples learns the same centres.
River's ``KMeans`` starts from random centres and moves them by a fixed half-life; it
was not measured here.

Every ``every`` examples the model takes a checkpoint: its personas, numbered so that
each keeps its id across checkpoints (the new centres are matched to the previous
checkpoint's by the assignment that minimises the total distance,
``scipy.optimize.linear_sum_assignment``). What is published (``view``) is matched to
the last checkpoint, so ids depend on the examples learned, never on how often the
learner happened to publish. Each persona is described by how its centre differs from
the population, in words.

>>> model = PersonaModel(k=2, warmup=4)
>>> for orders in (0, 0, 0, 9, 9, 9, 0, 9):
...     model.learn_one({**dict.fromkeys(FEATURES, 0.0), "orders": float(orders)})
>>> snapshot = model.view()
>>> sorted((p.size, p.description) for p in snapshot.personas)
[(4, 'orders above average'), (4, 'orders below average')]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY, TREND_SPAN

FEATURES = (
    "orders",
    "net_revenue",
    "average_order_value",
    "active_days",
    "events_per_day",
    "days_between_orders",
)
# The words for a feature well above / below the population (|z| of the centre).
_WORDS = {
    "orders": ("orders", "orders"),
    "net_revenue": ("spend", "spend"),
    "average_order_value": ("orders big baskets", "orders small baskets"),
    "active_days": ("visits often", "visits rarely"),
    "events_per_day": ("browses a lot per visit", "browses little per visit"),
    "days_between_orders": ("orders seldom", "reorders quickly"),
}
WINDOW_DAYS = TREND_SPAN // DAY  # the days read: churn keeps them (and a month more)

FloatArray = npt.NDArray[np.float64]


def persona_features(profile: Profile, day: int) -> dict[str, float]:
    """The persona features of ``profile`` as of the end of the day starting at ``day``
    (epoch ms, day-aligned): its identified activity over the ``WINDOW_DAYS`` days ending
    then, counts and money log1p'd so a few big spenders do not pull every centre.

    Days after ``day`` are not read, and a day's counts no longer change once the
    watermark has passed it: the same numbers live, replayed and at any later read.
    """
    orders = active = events = 0.0
    revenue = 0.0
    order_days: list[int] = []
    for start, (n, ordered, spent) in profile.churn_days.items():
        if start > day or day - start >= TREND_SPAN:
            continue
        events += n
        active += 1 if n > 0 else 0
        orders += ordered
        revenue += spent
        if ordered > 0:
            order_days.append(start)
    order_days.sort()
    gap = (order_days[-1] - order_days[-2]) / DAY if len(order_days) >= 2 else float(WINDOW_DAYS)
    net = max(0.0, revenue)
    return {
        "orders": math.log1p(orders),
        "net_revenue": math.log1p(net),
        "average_order_value": math.log1p(net / orders if orders else 0.0),
        "active_days": math.log1p(active),
        "events_per_day": math.log1p(events / active if active else 0.0),
        "days_between_orders": math.log1p(gap),
    }


def last_order_day(profile: Profile) -> int | None:
    """The newest day (start, epoch ms) with an identified order the profile keeps."""
    days = [start for start, cell in profile.churn_days.items() if cell[1] > 0]
    return max(days) if days else None


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

    version: int  # checkpoints taken before it
    personas: tuple[Persona, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def standardise(self, x: Mapping[str, float]) -> FloatArray:
        z: FloatArray = (_vector(x) - np.array(self.mean)) / np.array(self.scale)
        return z

    def assign(self, x: Mapping[str, float]) -> int:
        """The id of the persona nearest to the features ``x``."""
        return self.personas[self._nearest(self.standardise(x))].id

    def reasons(self, x: Mapping[str, float]) -> list[str]:
        """How the customer ``x`` differs from the population, in words (at most three)."""
        words = describe(self.standardise(x))
        return [] if words == NEAR_AVERAGE else words.split(", ")

    def standardise_all(self, points: Sequence[FloatArray]) -> FloatArray:
        """``standardise`` of many raw feature vectors (``FEATURES`` order) at once: rows."""
        rows = np.array(points).reshape(len(points), len(FEATURES))
        z: FloatArray = (rows - np.array(self.mean)) / np.array(self.scale)
        return z

    def assign_all(self, points: Sequence[FloatArray]) -> list[int]:
        """``assign`` of many raw feature vectors (``FEATURES`` order) in whole arrays: the
        learner assigns its newest few hundred points at every snapshot and checkpoint."""
        if not len(points):
            return []
        return self.assign_standardised(self.standardise_all(points))

    def assign_standardised(self, z: FloatArray) -> list[int]:
        """``assign_all`` of rows already standardised (``standardise_all``): the learner
        has them for the silhouette too."""
        d = ((self._centres()[None, :, :] - z[:, None, :]) ** 2).sum(axis=2)
        ids = [p.id for p in self.personas]
        return [ids[i] for i in d.argmin(axis=1).tolist()]

    def _nearest(self, z: FloatArray) -> int:
        return int(np.argmin(((self._centres() - z) ** 2).sum(axis=1)))

    def _centres(self) -> FloatArray:
        return np.array([[p.centre[f] for f in FEATURES] for p in self.personas])


class PersonaModel:
    """Sequential k-means over standardised persona features (see the module docstring).

    The running moments and the centres are lists of Python floats: a point costs a few
    dozen float operations, which plain Python does in less time than numpy spends on
    calls over 6-element arrays. They are the operations numpy did, element by element,
    and IEEE ``+ - * /`` and ``sqrt`` round alike in both: the same numbers, bit for bit
    (the nearest centre too, ``_nearest``). Pickled, they are the numpy arrays they were
    (``__getstate__``).
    """

    def __init__(
        self, k: int = 5, warmup: int = 200, every: int = 500, sample: int = 256, seed: int = 0
    ) -> None:
        if k < 2 or warmup < k or every < 1 or sample < 2:
            raise ValueError(
                "k must be >= 2, warmup >= k, every >= 1 and sample >= 2, got "
                f"k={k}, warmup={warmup}, every={every}, sample={sample}"
            )
        self.k, self.warmup, self.every, self.seed = k, warmup, every, seed
        self.n = 0
        self.mean = [0.0] * len(FEATURES)
        self.m2 = [0.0] * len(FEATURES)
        self.buffer: list[FloatArray] = []
        self.centres: list[list[float]] | None = None  # in raw feature space
        self.counts = [0] * k
        self.previous: PersonaSnapshot | None = None  # the last checkpoint
        # The newest points learned (raw): what the live quality is measured on.
        self.recent: deque[FloatArray] = deque(maxlen=sample)
        self.stability: float | None = None  # of ``recent``, between the last two checkpoints

    def learn_one(self, x: Mapping[str, float]) -> None:
        self._learn(_vector(x))

    def learn_features(self, features: Sequence[float]) -> None:
        """``learn_one`` of features in ``FEATURES`` order, as the learner's examples carry
        them: no dict built per example to be read back."""
        v = np.array(features, dtype=np.float64)
        if v.shape != (len(FEATURES),):
            raise ValueError(f"{len(FEATURES)} features expected, got shape {v.shape}")
        self._learn(v)

    def _learn(self, v: FloatArray) -> None:
        self.n = n = self.n + 1
        self.recent.append(v)
        x = v.tolist()
        mean, m2 = self.mean, self.m2
        for j, xj in enumerate(x):  # Welford's running mean and sum of squares
            delta = xj - mean[j]
            mean[j] += delta / n
            m2[j] += delta * (xj - mean[j])
        if self.centres is None:
            self.buffer.append(v)
            if len(self.buffer) >= self.warmup:
                self._seed()
        else:
            nearest = self._nearest(self.centres, x)
            self.counts[nearest] = count = self.counts[nearest] + 1
            centre = self.centres[nearest]
            for j, xj in enumerate(x):
                centre[j] += (xj - centre[j]) / count
        if self.centres is not None and n % self.every == 0:
            self._checkpoint()

    def _nearest(self, centres: list[list[float]], x: list[float]) -> int:
        """The centre nearest to ``x`` in standard deviations, as numpy has always picked
        it: ``argmin((((centres - x) / scale) ** 2).sum(axis=1))``, the first of equals.

        The same numbers bit for bit: numpy adds a row of fewer than 8 terms in order,
        from 0.0, as this loop does (``test_a_near_tie_is_decided_as_numpy_adds_the_squares``
        fails if the order differs). Eight features or more would need numpy's pairwise
        order here.
        """
        d = max(self.n - 1, 1)
        # ``_scale`` element by element. A q below 0 (never, for a sum of squares) or nan
        # makes numpy's sqrt nan but math.sqrt raise: skipped, both end at a scale of 1.0.
        std = [math.sqrt(q / d) if q > 0.0 else 0.0 for q in self.m2]
        scale = [s if s > 1e-9 else 1.0 for s in std]
        best, nearest = math.inf, 0
        for i, centre in enumerate(centres):
            total = 0.0
            # zip's keywords are parsed per call (strict= costs 0.1 us a centre); the
            # lengths are all len(FEATURES).
            for c, xj, s in zip(centre, x, scale):  # noqa: B905
                t = (c - xj) / s
                total += t * t
            if total != total:  # nan: numpy's argmin picks the first nan
                return i
            if total < best or i == 0:  # the first of equals
                best, nearest = total, i
        return nearest

    def view(self) -> PersonaSnapshot | None:
        """The personas now, ids matched to the last checkpoint's; None during warm-up."""
        if self.centres is None:
            return None
        scale = self._scale()
        z = (np.array(self.centres) - np.array(self.mean)) / scale
        ids = list(range(self.k))
        if self.previous is not None:
            old = np.array([[p.centre[f] for f in FEATURES] for p in self.previous.personas])
            rows, cols = linear_sum_assignment(((z[:, None, :] - old[None, :, :]) ** 2).sum(2))
            for row, col in zip(rows, cols, strict=True):
                ids[int(row)] = self.previous.personas[int(col)].id
        personas = sorted(
            (
                Persona(
                    ids[i],
                    self.counts[i],
                    {f: round(float(z[i][j]), 4) for j, f in enumerate(FEATURES)},
                    describe(z[i]),
                )
                for i in range(self.k)
            ),
            key=lambda p: p.id,
        )
        version = self.previous.version + 1 if self.previous else 1
        return PersonaSnapshot(version, tuple(personas), tuple(self.mean), tuple(scale.tolist()))

    def recent_points(self) -> list[dict[str, float]]:
        """The newest points learned, as features."""
        return [dict(zip(FEATURES, v.tolist(), strict=True)) for v in self.recent]

    def __getstate__(self) -> dict[str, Any]:
        # The numpy arrays of the states published before the moments were lists: a
        # learner on either side of the change reads the other's.
        state = dict(self.__dict__)
        state["mean"], state["m2"] = np.array(self.mean), np.array(self.m2)
        state["centres"] = None if self.centres is None else np.array(self.centres)
        state["counts"] = np.array(self.counts, dtype=np.int64)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.mean, self.m2 = np.asarray(self.mean).tolist(), np.asarray(self.m2).tolist()
        self.centres = None if self.centres is None else np.asarray(self.centres).tolist()
        self.counts = np.asarray(self.counts).tolist()

    def _checkpoint(self) -> None:
        before = self.previous
        now = self.view()
        if before is not None and now is not None and self.recent:
            points = list(self.recent)
            same = [
                a == b
                for a, b in zip(before.assign_all(points), now.assign_all(points), strict=True)
            ]
            self.stability = sum(same) / len(same)
        self.previous = now

    def _scale(self) -> FloatArray:
        std: FloatArray = np.sqrt(np.array(self.m2) / max(self.n - 1, 1))
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
        centres = points[chosen]
        nearest = np.argmin(
            (((points[:, None, :] - centres[None, :, :]) / scale) ** 2).sum(axis=2), axis=1
        )
        self.centres = centres.tolist()
        self.counts = np.bincount(nearest, minlength=self.k).tolist()
        self.buffer = []


NEAR_AVERAGE = "close to the average customer"


def describe(z: Sequence[float] | FloatArray) -> str:
    """Words for the (at most three) features where a centre is furthest from the mean,
    0.5 standard deviations at least: 'visits often, orders far above average'."""
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
    return ", ".join(words) or NEAR_AVERAGE


def _vector(x: Mapping[str, float]) -> FloatArray:
    return np.array([float(x[name]) for name in FEATURES])
