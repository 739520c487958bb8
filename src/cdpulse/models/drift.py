"""Drift of a model's inputs and of its score: the recent window against a reference.

Each learner keeps, per event-time day, one histogram (``models/histogram.py``: buckets
within ~2 % of each other, merged exactly) of every input feature of the examples it
learns and one of the score its model gave them before learning (``DriftMonitor``). A
report (``DriftMonitor.report``) compares the last ``window_days`` days of event time
(up to the newest day seen) with a reference: the ``reference_days`` days before that
window, or a range the operator pins. Per feature:

* **PSI**, the population stability index, over ten bins cut at the reference's deciles
  (shares below 1e-4 are read as 1e-4): sum of (current - reference) x ln(current /
  reference). Conventionally under 0.1 is stable, 0.1 to 0.25 a moderate shift, above
  0.25 a drift; the drift threshold is ``CDPULSE_DRIFT_PSI_THRESHOLD``.
* **KS**, the Kolmogorov-Smirnov statistic: the largest gap between the two cumulative
  distributions, read at every bucket.

A model's ``status`` is its worst feature's (the score's included): ``stable``,
``moderate`` or ``drifted``, or ``unknown`` (with the reason) while either window holds
fewer than ``MIN_EXAMPLES`` examples. Both are computed on the bucketed values, so two
values within ~2 % of each other count as one; and on samples, so a PSI under ~0.01 is
noise at a few thousand examples.

>>> import random
>>> rng = random.Random(1)
>>> monitor = DriftMonitor(("x",))
>>> for day in range(35):
...     shift = 3.0 if day >= 28 else 0.0
...     monitor.observe([(day * DAY, [rng.gauss(shift, 1), 0.5]) for _ in range(300)])
>>> report = monitor.report(DriftWindows(7, 28, None), threshold=0.25)
>>> report.status, [f.name for f in report.features if f.status == "drifted"]
('drifted', ['x'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec
import numpy as np

from cdpulse.models.histogram import Histogram

if TYPE_CHECKING:
    from cdpulse.settings import Settings

DAY = 86_400_000
MIN_EXAMPLES = 100  # in each window, before a figure is defined
MODERATE = 0.1  # PSI from which a shift is reported, below the drift threshold
FLOOR = 1e-4  # the smallest share a PSI bin reads: an empty bin is not infinite drift
SCORE = "score"  # the model's output, reported beside its inputs
DECILES = [i / 10 for i in range(1, 10)]

Status = Literal["stable", "moderate", "drifted", "unknown"]
_RANK: dict[Status, int] = {"unknown": -1, "stable": 0, "moderate": 1, "drifted": 2}


class FeatureDrift(msgspec.Struct, frozen=True):
    """One input's (or the score's) drift: PSI, KS, and what each window held."""

    name: str
    psi: float | None
    ks: float | None
    status: Status
    current: int  # examples in the recent window
    reference: int  # examples in the reference


class DriftReport(msgspec.Struct, frozen=True):
    """A model's drift at the newest event time its learner saw."""

    status: Status
    unknown: str  # why the status is unknown, "" when it is not
    method: str
    threshold: float
    window: tuple[int, int] | None  # [from, to) epoch ms, event time
    reference: tuple[int, int] | None
    pinned: bool  # the reference is the operator's, not the days before the window
    features: list[FeatureDrift]
    score: FeatureDrift | None
    as_of: int | None  # the end of the newest event-time day seen

    def psi(self) -> dict[str, float | None]:
        """Each feature's PSI and the score's, by name."""
        out = {f.name: f.psi for f in self.features}
        if self.score is not None:
            out[SCORE] = self.score.psi
        return out


METHOD = (
    "PSI over ten bins at the reference's deciles (status), and KS, per input and for "
    "the score, from histograms per event-time day"
)


@dataclass(frozen=True, slots=True)
class DriftWindows:
    """The recent window's width and the reference: the days before it, or pinned."""

    window_days: int
    reference_days: int
    pinned: tuple[int, int] | None  # [from, to) epoch ms, event time

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftWindows:
        """``CDPULSE_DRIFT_WINDOW_DAYS``, ``_REFERENCE_DAYS`` and ``_REFERENCE``."""
        pinned = settings.drift_reference
        return cls(
            settings.drift_window_days,
            settings.drift_reference_days,
            None
            if pinned is None
            else (int(pinned[0].timestamp() * 1000), int(pinned[1].timestamp() * 1000)),
        )


@dataclass
class DriftMonitor:
    """Per-day histograms of a model's inputs (``features``) and of its score.

    ``offset``: the last offset of the model's topic observed, so a learner that restarts
    from a saved monitor does not count what it observed twice.
    """

    features: tuple[str, ...]
    days: dict[int, list[Histogram]] = field(default_factory=dict)
    offset: int = -1

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.features, SCORE)

    def observe(self, rows: Iterable[tuple[int, Sequence[float]]]) -> None:
        """Count (event time ms, values) rows: the features in order, then the score.
        Values that are not finite are not counted."""
        by_day: dict[int, list[Sequence[float]]] = {}
        width = len(self.names)
        for at, values in rows:
            if len(values) != width:
                raise ValueError(
                    f"a drift row has {len(values)} values; {width} expected: "
                    f"{', '.join(self.names)}"
                )
            by_day.setdefault(at // DAY, []).append(values)
        for day, rows_of_day in by_day.items():
            table = np.asarray(rows_of_day, dtype=float)
            for histogram, column in zip(self._day(day), table.T, strict=True):
                histogram.add(column)

    def observe_learned(self, scored: Iterable[tuple[int, int, Sequence[float]]]) -> None:
        """Count (offset, event time ms, values) rows of a learner's topic, skipping the
        offsets observed already (a learner restarted from an older snapshot learns them
        again), and move ``offset`` past them."""
        fresh = [(offset, at, values) for offset, at, values in scored if offset > self.offset]
        if fresh:
            self.observe((at, values) for _, at, values in fresh)
            self.offset = max(offset for offset, _, _ in fresh)

    def replace(self, at: int, values: Sequence[Sequence[float]]) -> None:
        """Make ``values`` the whole of day(``at``): for a model refitted on the whole
        population, whose every refit sees every customer again (lifetime value)."""
        self.days.pop(at // DAY, None)
        self.observe((at, row) for row in values)

    def _day(self, day: int) -> list[Histogram]:
        found = self.days.get(day)
        if found is None:
            found = self.days[day] = [Histogram() for _ in self.names]
        return found

    def merge(self, other: DriftMonitor) -> None:
        """Add ``other``'s days (another shard of the same model) into this one."""
        if other.features != self.features:
            raise ValueError(
                f"drift monitors of different inputs: {other.features} vs {self.features}"
            )
        for day, histograms in other.days.items():
            for mine, theirs in zip(self._day(day), histograms, strict=True):
                mine.merge(theirs)

    def prune(self, windows: DriftWindows) -> None:
        """Forget the days no report can read any more (a pinned reference is kept)."""
        if not self.days:
            return
        newest = max(self.days)
        first = newest - windows.window_days - windows.reference_days + 1
        for day in [d for d in self.days if d < first]:
            if windows.pinned is None or not _within(day, windows.pinned):
                del self.days[day]

    def report(self, windows: DriftWindows, threshold: float) -> DriftReport:
        """Each feature's drift and the model's status at the newest day seen."""
        if not self.days:
            return _unknown("no example observed yet", threshold, windows.pinned is not None)
        newest = max(self.days)
        window = ((newest - windows.window_days + 1) * DAY, (newest + 1) * DAY)
        reference = windows.pinned or (window[0] - windows.reference_days * DAY, window[0])
        current = self._merged(window)
        base = self._merged(reference)
        rows = [_compare(name, base[i], current[i], threshold) for i, name in enumerate(self.names)]
        examples = (current[-1].n, base[-1].n)  # every row has a score
        why = ""
        if examples[0] < MIN_EXAMPLES:
            why = f"{examples[0]} examples in the recent window; {MIN_EXAMPLES} needed"
        elif examples[1] < MIN_EXAMPLES:
            which = "pinned reference" if windows.pinned else "reference window"
            why = f"{examples[1]} examples in the {which}; {MIN_EXAMPLES} needed"
        worst: Status = "unknown" if why else max((r.status for r in rows), key=_rank)
        return DriftReport(
            worst,
            why,
            METHOD,
            threshold,
            window,
            reference,
            windows.pinned is not None,
            rows[:-1],
            rows[-1],
            window[1],
        )

    def _merged(self, span: tuple[int, int]) -> list[Histogram]:
        merged = [Histogram() for _ in self.names]
        for day, histograms in self.days.items():
            if _within(day, span):
                for into, histogram in zip(merged, histograms, strict=True):
                    into.merge(histogram)
        return merged

    # --- bytes: saved by the learner, merged across shards ------------------------------

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(
            _Saved(
                list(self.features),
                self.offset,
                {day: [h.counts for h in histograms] for day, histograms in self.days.items()},
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> DriftMonitor:
        saved = _DECODER.decode(raw)
        return cls(
            tuple(saved.features),
            {
                day: [Histogram(counts) for counts in histograms]
                for day, histograms in saved.days.items()
            },
            saved.offset,
        )


class _Saved(msgspec.Struct, array_like=True):
    features: list[str]
    offset: int
    days: dict[int, list[dict[int, int]]]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Saved)


def _rank(status: Status) -> int:
    return _RANK[status]


def _within(day: int, span: tuple[int, int]) -> bool:
    return span[0] <= day * DAY < span[1]


def _compare(name: str, base: Histogram, current: Histogram, threshold: float) -> FeatureDrift:
    sizes = (current.n, base.n)
    if min(sizes) < MIN_EXAMPLES:
        return FeatureDrift(name, None, None, "unknown", *sizes)
    value = psi(base, current)
    status: Status = (
        "drifted" if value >= threshold else "moderate" if value >= MODERATE else "stable"
    )
    return FeatureDrift(name, round(value, 6), round(ks(base, current), 6), status, *sizes)


def psi(base: Histogram, current: Histogram) -> float:
    """The population stability index of ``current`` against ``base``, in ten bins cut at
    ``base``'s deciles (fewer where values repeat).

    >>> base, same, moved = Histogram(), Histogram(), Histogram()
    >>> base.add(np.arange(1000.0)); same.add(np.arange(1000.0)); moved.add(np.arange(500.0))
    >>> psi(base, same), round(psi(base, moved), 2)
    (0.0, 3.7)
    """
    edges = sorted(set(base.quantile_keys(DECILES)))
    shares = []
    for histogram in (base, current):
        cdf = [*histogram.cdf(edges), 1.0]
        shares.append([b - a for a, b in zip([0.0, *cdf], cdf, strict=False)])
    total = 0.0
    for r, c in zip(*shares, strict=True):
        r, c = max(r, FLOOR), max(c, FLOOR)
        total += (c - r) * math.log(c / r)
    return total


def ks(base: Histogram, current: Histogram) -> float:
    """The largest gap between the two cumulative distributions, at every bucket."""
    keys = sorted(base.counts.keys() | current.counts.keys())
    pairs = zip(base.cdf(keys), current.cdf(keys), strict=True)
    return max((abs(a - b) for a, b in pairs), default=0.0)


def _unknown(why: str, threshold: float, pinned: bool) -> DriftReport:
    return DriftReport("unknown", why, METHOD, threshold, None, None, pinned, [], None, None)


def unknown_report(why: str, threshold: float = 0.25) -> DriftReport:
    """A model's drift where none is tracked, saying why."""
    return _unknown(why, threshold, False)


def worst(statuses: Iterable[Status]) -> Status:
    """The worst of several statuses (``unknown`` only when all are)."""
    return max(statuses, key=_rank, default="unknown")
