"""A model's score distribution as the dashboard draws it, from the drift monitor's histogram.

The learners already keep, per event-time day, a histogram of each model's output
(``models.drift``: churn scores of the examples learned, lifetime value of the population
at each refit). This reads one merged histogram as quantiles and as counts in equal-width
bins. A bucket stands for its values by its midpoint (within ~2 % of each: the
histogram's relative accuracy), so a bucket that straddles a bin edge is counted whole
in the bin its midpoint falls in.

>>> import numpy as np
>>> h = Histogram()
>>> h.add(np.array([0.1, 0.2, 0.2, 0.9]))
>>> d = distribution(h, (0.0, 1.0), bins=2)
>>> d["n"], [b["count"] for b in d["bins"]], round(d["quantiles"][4]["value"], 2)
(4, [3, 1], 0.2)
"""

from __future__ import annotations

from typing import Any

from cdpulse.models.histogram import BIAS, GAMMA, Histogram

RANKS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
BINS = 10


def bucket_value(key: int) -> float:
    """The midpoint of the bucket ``key`` (``Histogram.key``'s inverse, within ~2 %)."""
    if key == 0:
        return 0.0
    index = abs(key) - BIAS
    value = 2 * GAMMA**index / (1 + GAMMA)
    return value if key > 0 else -value


def distribution(
    histogram: Histogram, span: tuple[float, float] | None = None, bins: int = BINS
) -> dict[str, Any]:
    """``n``, quantiles at ``RANKS`` and counts in ``bins`` equal-width bins over ``span``
    (the values' own range when None); empty lists when the histogram is empty."""
    n = histogram.n
    if not n:
        return {"n": 0, "quantiles": [], "bins": []}
    keys = histogram.quantile_keys(RANKS)
    quantiles = [
        {"rank": rank, "value": round(bucket_value(k), 6)}
        for rank, k in zip(RANKS, keys, strict=True)
    ]
    values = {k: bucket_value(k) for k in histogram.counts}
    low, high = span or (min(values.values()), max(values.values()))
    width = (high - low) / bins
    counts = [0] * bins
    for key, count in histogram.counts.items():
        i = int((values[key] - low) / width) if width > 0 else 0
        counts[min(max(i, 0), bins - 1)] += count
    return {
        "n": n,
        "quantiles": quantiles,
        "bins": [
            {"from": round(low + i * width, 6), "to": round(low + (i + 1) * width, 6), "count": c}
            for i, c in enumerate(counts)
        ],
    }
