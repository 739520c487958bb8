"""Rolling event-time windows kept as buckets, read relative to an ``as_of`` time.

A window of width W read at time R covers the W/g buckets of granularity g ending with
R's bucket. Buckets older than any window could still need are pruned relative to the
profile's ``last_seen``: every later read happens at an ``as_of`` >= ``last_seen``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Annotated: mypyc (setup.py) compiles modules that read these inside an import cycle,
# where an unannotated constant's type cannot be determined.
MINUTE: int = 60_000
HOUR: int = 60 * MINUTE
DAY: int = 24 * HOUR


@dataclass(frozen=True, slots=True)
class Window:
    """A named rolling window and the bucket granularity it is counted with."""

    name: str
    width: int
    granularity: int


WINDOWS: tuple[Window, ...] = (
    Window("1h", HOUR, 5 * MINUTE),
    Window("24h", DAY, HOUR),
    Window("7d", 7 * DAY, DAY),
    Window("30d", 30 * DAY, DAY),
)
GRANULARITIES: tuple[int, ...] = tuple(sorted({w.granularity for w in WINDOWS}))
# Day buckets reach back 60 days: models compare the last 30 days with the 30 before.
TREND_SPAN: int = 60 * DAY
_KEEP: dict[int, int] = {
    g: max(w.width for w in WINDOWS if w.granularity == g) for g in GRANULARITIES
}
_KEEP[DAY] = max(_KEEP[DAY], TREND_SPAN)

Buckets = dict[int, dict[int, list[float]]]


def first_bucket(window: Window, as_of: int) -> int:
    """Start of the oldest bucket inside ``window`` read at ``as_of``."""
    return (as_of // window.granularity) * window.granularity - window.width + window.granularity


def add(buckets: Buckets, t: int, events: int, orders: int, revenue: float) -> None:
    """Count one event at time ``t`` in every granularity."""
    # Once per applied event: a bucket's cell is looked up, not made and thrown away
    # (``setdefault``'s default), and ``t - t % g`` is ``(t // g) * g`` for integers.
    for g in GRANULARITIES:
        cells = buckets.get(g)
        if cells is None:
            cells = buckets[g] = {}
        start = t - t % g
        cell = cells.get(start)
        if cell is None:
            cells[start] = [0 + events, 0 + orders, 0.0 + revenue]
        else:
            cell[0] += events
            cell[1] += orders
            cell[2] += revenue


def moved(before: int, after: int) -> bool:
    """Whether ``after`` is in a later bucket than ``before`` (then ``prune`` may drop some)."""
    finest = GRANULARITIES[0]
    return after // finest != before // finest


def prune(buckets: Buckets, last_seen: int, since: int | None = None) -> None:
    """Drop buckets no window can reach any more.

    ``since``: the ``last_seen`` of the previous prune; a granularity whose bucket did not
    change since then has nothing new to drop.
    """
    for g, cells in buckets.items():
        if since is not None and since // g == last_seen // g:
            continue
        oldest = (last_seen // g) * g - _KEEP[g] + g
        for start in [s for s in cells if s < oldest]:
            del cells[start]


def merge(into: Buckets, other: Buckets) -> None:
    """Add ``other``'s buckets to ``into``."""
    for g, cells in other.items():
        target = into.setdefault(g, {})
        for start, (events, orders, revenue) in cells.items():
            cell = target.setdefault(start, [0, 0, 0.0])
            cell[0] += events
            cell[1] += orders
            cell[2] += revenue


def totals(buckets: Buckets, granularity: int, lo: int, hi: int) -> tuple[int, int, float]:
    """Events, orders and revenue of the buckets starting in [lo, hi]."""
    events = orders = 0
    revenue = 0.0
    for start, cell in buckets.get(granularity, {}).items():
        if lo <= start <= hi:
            events += int(cell[0])
            orders += int(cell[1])
            revenue += cell[2]
    return events, orders, revenue


def read(buckets: Buckets, as_of: int) -> dict[str, dict[str, float]]:
    """Events, orders and revenue per window at ``as_of``."""
    out: dict[str, dict[str, float]] = {}
    for window in WINDOWS:
        lo = first_bucket(window, as_of)
        events, orders, revenue = totals(buckets, window.granularity, lo, as_of)
        out[window.name] = {"events": events, "orders": orders, "revenue": round(revenue, 2)}
    return out
