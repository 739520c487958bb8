"""The dashboard's distributions: read from drift-monitor histograms, against numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.app.dashboard_data import score_histogram
from cdpulse.models.drift import DAY, DriftMonitor
from cdpulse.models.histogram import Histogram
from cdpulse.models.score_distribution import RANKS, distribution


def test_an_empty_histogram_has_no_figures() -> None:
    assert distribution(Histogram()) == {"n": 0, "quantiles": [], "bins": []}
    assert score_histogram([], 7) == (Histogram(), None)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(
            lambda x: x == 0 or abs(x) > 1e-6
        ),
        min_size=1,
        max_size=300,
    )
)
def test_quantiles_are_numpys_within_the_bucket_width(values: list[float]) -> None:
    histogram = Histogram()
    histogram.add(np.array(values))
    d = distribution(histogram)
    assert d["n"] == len(values) == sum(b["count"] for b in d["bins"])
    for q, rank in zip(d["quantiles"], RANKS, strict=True):
        exact = float(np.quantile(values, rank, method="inverted_cdf"))
        assert abs(q["value"] - exact) <= 0.021 * abs(exact) + 1e-6, (q, exact)


def test_scores_outside_the_span_fall_in_its_end_bins() -> None:
    histogram = Histogram()
    histogram.add(np.array([0.0, 0.05, 0.5, 0.999, 1.5]))
    d = distribution(histogram, (0.0, 1.0), bins=4)
    assert [b["count"] for b in d["bins"]] == [2, 0, 1, 2]
    assert [b["from"] for b in d["bins"]] == [0.0, 0.25, 0.5, 0.75]


def test_the_window_takes_the_newest_days_of_every_unit() -> None:
    one, two = DriftMonitor(("x",)), DriftMonitor(("x",))
    one.observe([(10 * DAY, [0.0, 0.1]), (12 * DAY, [0.0, 0.2])])
    two.observe([(13 * DAY, [0.0, 0.3]), (14 * DAY, [0.0, 0.4])])
    merged, window = score_histogram([one, two], 3)
    assert merged.n == 3 and window == [12 * DAY, 15 * DAY]
    newest, window = score_histogram([one, two], None)
    assert newest.n == 1 and newest.counts == {Histogram.key(0.4): 1}
    assert window == [14 * DAY, 15 * DAY]
