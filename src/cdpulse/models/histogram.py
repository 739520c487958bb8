"""A histogram that merges exactly: counts in logarithmic buckets (DDSketch's layout).

A value ``x`` falls in the bucket ``ceil(log(|x|) / log(GAMMA))`` of its sign, or in the
zero bucket when ``|x| < TINY``; every value of a bucket is within ~2 % of every other
(relative accuracy), and a small integer (below 25) has a bucket of its own. Counting is
addition, so merging the histograms of days or shards is exact and deterministic: the
same values give the same figures in any order, in any process (a KLL sketch compacts at
random when merged, so two reports of the same data would differ).

Bucket keys are ordered like the values they hold: positive values get ``BIAS`` plus
their index, negative ones its negation, zero 0.

>>> h = Histogram()
>>> h.add(np.array([0.0, 1.0, 1.0, 2.0, -3.0, float("nan")]))
>>> h.n, h.cdf([h.key(-3.0), h.key(0.0), h.key(1.0)])
(5, [0.2, 0.4, 0.8])
>>> h.quantile_keys([0.5]) == [h.key(1.0)]
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

GAMMA = 1.04  # bucket width: values of one bucket are within ~2 % of each other
LOG_GAMMA = math.log(GAMMA)
TINY = 1e-9  # magnitudes below this count as zero
BIAS = 4000  # keeps positive keys above 0 down to TINY (its index is about -528)


@dataclass
class Histogram:
    """Counts of values by bucket key."""

    counts: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def key(value: float) -> int:
        """The bucket key of one value."""
        magnitude = abs(value)
        if magnitude < TINY:
            return 0
        index = math.ceil(math.log(magnitude) / LOG_GAMMA) + BIAS
        return index if value > 0 else -index

    def add(self, values: np.ndarray) -> None:
        """Count ``values``; values that are not finite are not counted."""
        x = values[np.isfinite(values)]
        if not len(x):
            return
        keys = np.zeros(len(x), dtype=np.int64)
        magnitude = np.abs(x)
        big = magnitude >= TINY
        index = np.ceil(np.log(magnitude[big]) / LOG_GAMMA).astype(np.int64) + BIAS
        keys[big] = np.where(x[big] > 0, index, -index)
        found, counts = np.unique(keys, return_counts=True)
        mine = self.counts
        for k, c in zip(found.tolist(), counts.tolist(), strict=True):
            mine[k] = mine.get(k, 0) + c

    def merge(self, other: Histogram) -> None:
        mine = self.counts
        for k, c in other.counts.items():
            mine[k] = mine.get(k, 0) + c

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def cdf(self, keys: Sequence[int]) -> list[float]:
        """The share of values in buckets at or below each key (keys ascending)."""
        total = self.n
        if not total:
            return [0.0] * len(keys)
        ordered = sorted(self.counts.items())
        out, seen, i = [], 0, 0
        for key in keys:
            while i < len(ordered) and ordered[i][0] <= key:
                seen += ordered[i][1]
                i += 1
            out.append(seen / total)
        return out

    def quantile_keys(self, ranks: Sequence[float]) -> list[int]:
        """The bucket holding each rank (ranks ascending, in (0, 1)): the first key whose
        cumulative share reaches it."""
        total = self.n
        if not total:
            return []
        out, seen = [], 0
        ordered = iter(sorted(self.counts.items()))
        key = 0
        for rank in ranks:
            while seen < rank * total:
                key, count = next(ordered)
                seen += count
            out.append(key)
        return out
