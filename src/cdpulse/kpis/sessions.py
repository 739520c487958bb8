"""Sessions per day: the profile's session spans, counted on the day each one starts.

The profile keeps its newest visits as spans of event time (``profile.rules``); a span
is a session, counted once on its first event's day. An event that extends the newest
span changes nothing; one that opens a span adds a session; a late event that joins two
spans, or moves a span's start, moves the count by the difference. Spans the profile no
longer keeps stay counted.

>>> H = 3_600_000
>>> tally = Tally()
>>> event([], 10 * H, H // 2, tally)                      # a first visit
>>> event([(10 * H, 10 * H)], 12 * H, H // 2, tally)      # a second one, later that day
>>> event([(10 * H, 10 * H), (12 * H, 12 * H)], 11 * H, H, tally)  # joins both: one session
>>> tally.counters(set())
{'day:1970-01-01': {'sessions': 1}}
"""

from __future__ import annotations

from collections.abc import Sequence

from cdpulse.kpis.fields import DAY, DAY_MS, SESSIONS
from cdpulse.kpis.tally import Tally

Span = tuple[int, int]


def event(spans: Sequence[Span], t: int, gap: int, tally: Tally) -> None:
    """Count what an event at ``t`` does to ``spans`` (the profile's before it)."""
    if spans:
        start, end = spans[-1]
        if start <= t:
            if t > end + gap:
                tally.add(DAY, t // DAY_MS, SESSIONS, 1)
            return  # in order: a new session or the newest one, longer
    else:
        tally.add(DAY, t // DAY_MS, SESSIONS, 1)
        return
    _difference(spans, union(spans, [(t, t)], gap), tally, segmented=True)


def merge(mine: Sequence[Span], other: Sequence[Span], gap: int, tally: Tally) -> None:
    """Count what joining two customers' spans does: visits closer than the gap are one."""
    if not mine or not other:
        return
    joined = union(mine, other, gap)
    _difference([*mine, *other], joined, tally, segmented=False)


def union(a: Sequence[Span], b: Sequence[Span], gap: int) -> list[Span]:
    """The spans of ``a`` and ``b``, those closer than ``gap`` joined (uncapped)."""
    out: list[Span] = []
    for start, end in sorted([*a, *b]):
        if out and start <= out[-1][1] + gap:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _difference(
    before: Sequence[Span], after: Sequence[Span], tally: Tally, segmented: bool
) -> None:
    delta: dict[int, int] = {}
    for start, _ in before:
        delta[start // DAY_MS] = delta.get(start // DAY_MS, 0) - 1
    for start, _ in after:
        delta[start // DAY_MS] = delta.get(start // DAY_MS, 0) + 1
    for day, n in delta.items():
        if n:
            tally.add(DAY, day, SESSIONS, n, segmented)
