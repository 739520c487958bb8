"""The best time to reach a customer: the 3-hour window of the day they are most active in.

Read from the profile's decayed hour-of-week histogram (``profile/send_hours.py``), in the
customer's own time. The hour of the day comes first (where a send lands in a busy
inbox); the days of the week are those that window is busiest on. All sums are integers,
so the live engine, ``cdpulse evaluate send-time`` and a replay pick the same hour, ties
included (the earliest hour wins a tie).

>>> weights = {}
>>> for day in (1, 2, 3):                       # Tue, Wed, Thu
...     weights[day * 24 + 20] = 24             # 20h
...     weights[day * 24 + 19] = weights[day * 24 + 21] = 8
>>> weights[5 * 24 + 9] = 8                      # one Saturday morning
>>> window = best_window(weights)
>>> window.hour, window.hours, window.days
(20, (19, 21), ('Tue', 'Wed', 'Thu'))
>>> window.reason
'usually active Tue-Thu 19-21h (94% of recent opens, clicks, visits and orders)'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdpulse.profile import send_hours
from cdpulse.profile.model import Profile
from cdpulse.profile.send_hours import HOURS_OF_WEEK, hour_of_week, local_offset
from cdpulse.profile.windows import DAY, HOUR

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Below this decayed weight (one open in the current week is 3 * 8 = 24) the histogram
# says too little to time a send: the field stays absent.
MIN_EVIDENCE = 24


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Where a send should land: the best hour, the window around it, its busiest days."""

    hour: int  # 0-23, the customer's time
    hours: tuple[int, int]  # first and last hour of the 3-hour window (may wrap midnight)
    days: tuple[str, ...]  # the days the window is busier than average on, Monday first
    share: float  # the share of all decayed activity inside the window (any day)
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.hour,
            "hours": list(self.hours),
            "days": list(self.days),
            "share": round(self.share, 4),
            "reason": self.reason,
        }


def by_hour(weights: Mapping[int, int]) -> list[int]:
    """Hour-of-day totals of an hour-of-week histogram (hour of the week -> weight)."""
    out = [0] * 24
    for how, w in weights.items():
        out[how % 24] += w
    return out


def best_hour(hourly: Sequence[int]) -> int:
    """The hour whose 3-hour window (the hour before to the hour after) holds most; on a
    tie the one busiest itself (a lone peak is the window's centre), then the earliest."""
    best, best_key = 0, (-1, -1)
    for h in range(24):
        key = (hourly[h - 1] + hourly[h] + hourly[(h + 1) % 24], hourly[h])
        if key > best_key:
            best, best_key = h, key
    return best


def in_window(hour: int, centre: int) -> bool:
    """Whether ``hour`` (0-23) is within one hour of ``centre``, across midnight too."""
    return (hour - centre) % 24 in (0, 1, 23)


def best_window(weights: Mapping[int, int]) -> SendWindow | None:
    """The send window of a decayed hour-of-week histogram (hour of the week -> weight,
    0 = Monday 00h); None without enough evidence."""
    total = sum(weights.values())
    if total < MIN_EVIDENCE:
        return None
    hour = best_hour(by_hour(weights))
    per_day = [0] * 7
    for how, w in weights.items():
        if in_window(how % 24, hour):
            per_day[how // 24] += w
    inside = sum(per_day)
    days = tuple(DAY_NAMES[d] for d in range(7) if per_day[d] * 7 > inside)
    share = inside / total
    first, last = (hour - 1) % 24, (hour + 1) % 24
    reason = (
        f"usually active {_days_text(days)} {first:02d}-{last:02d}h "
        f"({share:.0%} of recent opens, clicks, visits and orders)"
    )
    return SendWindow(hour, (first, last), days, share, reason)


def _days_text(days: tuple[str, ...]) -> str:
    """'Tue-Thu, Sat' for runs of consecutive days; 'any day' for all or none."""
    if not days or len(days) == 7:
        return "any day"
    index = [DAY_NAMES.index(d) for d in days]
    runs: list[list[int]] = []
    for i in index:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [
        DAY_NAMES[r[0]]
        if len(r) == 1
        else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}"
        if len(r) > 2
        else f"{DAY_NAMES[r[0]]}, {DAY_NAMES[r[1]]}"
        for r in runs
    ]
    return ", ".join(parts)


def send_window(profile: Profile, as_of: int) -> SendWindow | None:
    """The send window of ``profile`` at ``as_of`` (its newest event time for segments)."""
    if not profile.send_hours:
        return None
    return best_window(send_hours.weights(profile.send_hours, as_of))


def observe_open(profile: Profile, t: int, timestamp: object, counts: Counter[str]) -> None:
    """Count an email open at ``t`` as a hit or a miss of the send window ``profile``
    had before it (read at its newest event, as segments read it): the live quality on
    /metrics (``send_time_hit``, ``send_time_miss``). Opens of profiles without a window
    are not counted."""
    window = send_window(profile, profile.last_seen)
    if window is not None:
        hour = hour_of_week(t + local_offset(timestamp)) % 24
        counts["send_time_hit" if in_window(hour, window.hour) else "send_time_miss"] += 1


def send_time_view(profile: Profile, as_of: int) -> dict[str, Any] | None:
    """The ``best_send_window`` section of a profile document: None when unknown."""
    window = send_window(profile, as_of)
    return None if window is None else window.as_dict()


def next_start(window: SendWindow, t: int, offset: int) -> int:
    """The UTC time (epoch ms) the next occurrence of ``window`` starts at, at or after
    ``t``, for a customer ``offset`` ms ahead of UTC: its first hour in the customer's own
    time, on a day it is busier on when it names days (the day of its middle hour, which
    the days were counted by: a window of 23-01h named for Saturday starts Friday 23h).

    >>> window = SendWindow(20, (19, 21), ("Tue",), 0.5, "")
    >>> t = 1_733_313_600_000  # 2024-12-04T12:00Z, a Wednesday; +02:00 is 14h local
    >>> (next_start(window, t, 2 * HOUR) - t) / HOUR  # Tuesday 19h local = 17h UTC
    149.0
    """
    local = t + offset
    days = {DAY_NAMES.index(d) for d in window.days}
    # The middle hour of the first candidate day; the window starts the hour before it.
    middle = local // DAY * DAY + window.hour * HOUR
    while middle - HOUR < local or (days and _weekday(middle) not in days):
        middle += DAY
    return middle - HOUR - offset


def _weekday(local_ms: int) -> int:
    """0 = Monday; the epoch was a Thursday."""
    return (local_ms // DAY + 3) % 7


# The weeks a firing's send window is read from: the complete weeks before the firing's
# own, all of whose events are applied by the time it is decided (the watermark passed
# it), and none of which the profile has pruned unless its newest event is two or more
# weeks past the firing. A window that also read the firing's own week would depend on
# how many of that week's later events the deciding batch held: a re-delivered batch,
# cut elsewhere, would send the same firing with another deliver_at.
DELIVER_WEEKS = send_hours.WEEKS_KEPT - 2


def deliver_at(profile: Profile, t: int) -> int | None:
    """When a message fired at ``t`` should reach ``profile``'s customer (epoch ms, UTC):
    the next start of the send window of the ``DELIVER_WEEKS`` complete weeks before
    ``t``'s (``next_start``), in the newest UTC offset known from those weeks (UTC when
    none is, as the histogram counts such events); None without a window."""
    week = t // send_hours.WEEK
    first = week - DELIVER_WEEKS
    before = {k: n for k, n in profile.send_hours.items() if first <= k // HOURS_OF_WEEK < week}
    window = best_window(send_hours.weights(before, t))
    if window is None:
        return None
    known = [o for w, o in profile.utc_offsets.items() if first <= w < week]
    offset = max(known)[1] if known else 0
    return next_start(window, t, offset)
