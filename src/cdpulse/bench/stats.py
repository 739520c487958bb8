"""The arithmetic of a benchmark: percentiles, histogram quantiles, rates over a window.

Pure functions over plain numbers, so the figures a run reports can be checked by hand.

>>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
2.5
>>> histogram_quantile(0.5, [(0.01, 10), (0.02, 30), (float("inf"), 40)])
0.015
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

Bucket = tuple[float, float]  # (upper bound "le", cumulative count)
INF = math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, interpolating between the closest ranks.

    The same definition as numpy's default (``linear``): rank ``q * (n - 1)``.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(
    values: Sequence[float], qs: Iterable[float] = (0.5, 0.95, 0.99)
) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values``."""
    return {f"p{round(q * 100):d}": percentile(values, q) for q in qs}


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float:
    """The ``q``-quantile of a cumulative histogram, as Prometheus' ``histogram_quantile``.

    ``buckets`` are (upper bound, cumulative count) in increasing bound order, the last
    one ``+Inf``. The value is interpolated linearly inside the bucket the rank falls in;
    a rank in the ``+Inf`` bucket answers the highest finite bound (a floor, not a value).
    The first bucket is taken to start at 0. NaN when the histogram is empty.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ValueError("buckets must end with the +Inf bucket")
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def histogram_delta(after: Sequence[Bucket], before: Sequence[Bucket]) -> list[Bucket]:
    """The observations made between two scrapes of one cumulative histogram."""
    if [b for b, _ in after] != [b for b, _ in before]:
        raise ValueError("the two scrapes have different bucket bounds")
    return [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]


def crossing_time(samples: Sequence[tuple[float, float]], level: float) -> float | None:
    """When a non-decreasing series first reaches ``level``, interpolated between samples.

    ``samples`` are (time, value) in time order; None when it never gets there.
    """
    previous: tuple[float, float] | None = None
    for t, value in samples:
        if value >= level:
            if previous is None or value == previous[1]:
                return t
            t0, v0 = previous
            return t0 + (t - t0) * (level - v0) / (value - v0)
        previous = (t, value)
    return None


def interpolate(samples: Sequence[tuple[float, float]], t: float) -> float:
    """The value of a sampled series at time ``t`` (clamped to its first and last sample)."""
    if not samples:
        raise ValueError("no samples")
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def window_rate(
    samples: Sequence[tuple[float, float]], total: float, start: float = 0.1, end: float = 0.9
) -> tuple[float, float, float] | None:
    """Units per second while progress went from ``start`` to ``end`` of ``total``.

    Leaves out the warm-up (process start, group join) and the tail. Returns
    (rate, t_start, t_end), or None when progress never covered the window.

    A worker's committed count moves in steps, one per batch: interpolating across a
    step would credit the time before it with work only committed at its end, which
    with large batches (a few steps in all) over- or under-states the rate by a batch.
    So the window runs from the first step at or past ``start`` to the last step at or
    before ``end``, each taken where its value first appeared, and counts what was
    committed between them. A series that rises at every sample (the ceilings) gives
    nearly the interpolated window. Too few steps inside the window to tell: the
    crossings interpolated as before.
    """
    low, high = start * total, end * total
    first = next((i for i, (_, v) in enumerate(samples) if v >= low), None)
    last = None
    for i, (_, v) in enumerate(samples):
        if v > high:
            break
        if last is None or v != samples[last][1]:
            last = i  # where this value first appeared
    if first is not None and last is not None and last > first:
        (t0, v0), (t1, v1) = samples[first], samples[last]
        if t1 > t0 and v1 > v0:
            return (v1 - v0) / (t1 - t0), t0, t1
    t_start = crossing_time(samples, low)
    t_end = crossing_time(samples, high)
    if t_start is None or t_end is None or t_end <= t_start:
        return None
    return (end - start) * total / (t_end - t_start), t_start, t_end


def rates(samples: Sequence[tuple[float, float]], span: float = 2.0) -> list[tuple[float, float]]:
    """Throughput over time: the slope of a counter over the ``span`` seconds before each sample."""
    out: list[tuple[float, float]] = []
    first = 0
    for t, value in samples:
        while samples[first][0] < t - span:
            first += 1
        t0, v0 = samples[first]
        if t > t0:
            out.append((t, (value - v0) / (t - t0)))
    return out


def add_histograms(histograms: Sequence[Sequence[Bucket]]) -> list[Bucket]:
    """The buckets of several processes' histograms of one metric, added up.

    >>> add_histograms([[(1.0, 2.0), (INF, 3.0)], [(1.0, 1.0), (INF, 1.0)]])
    [(1.0, 3.0), (inf, 4.0)]
    """
    present = [h for h in histograms if h]
    if not present:
        return []
    total = [list(b) for b in present[0]]
    for other in present[1:]:
        if [b for b, _ in other] != [b for b, _ in total]:
            raise ValueError("the histograms have different bucket bounds")
        for i, (_, count) in enumerate(other):
            total[i][1] += count
    return [(bound, count) for bound, count in total]


def typical_bucket(buckets: Sequence[Bucket], q: float = 0.5) -> float | None:
    """The upper bound of the bucket holding the ``q``-quantile: for whole-number histograms
    (round trips per batch), the typical value itself rather than an interpolation.

    >>> typical_bucket([(1, 0), (2, 90), (3, 99), (4, 100), (INF, 100)])
    2
    """
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return None


def share_at_most(buckets: Sequence[Bucket], bound: float) -> float | None:
    """The share of observations at or below ``bound`` (one of the buckets' bounds).

    >>> share_at_most([(1, 0), (2, 90), (3, 99), (INF, 100)], 3)
    0.99
    """
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    for b, count in buckets:
        if b == bound:
            return count / total
    raise ValueError(f"no bucket bound {bound}")
