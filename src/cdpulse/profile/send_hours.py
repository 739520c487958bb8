"""When a customer is reachable: weighted activity per hour of the week, per event-time week.

``Profile.send_hours`` maps ``week * 168 + hour_of_week`` to a weighted count of the
customer's email opens and clicks, page views and orders. ``week`` is the UTC event time's
week since the epoch (what ages the count); ``hour_of_week`` is the hour in the
customer's own time (0 = Monday 00h): the UTC offset the event's timestamp was written
with, when it carried one, else UTC. Counts are integers and weeks older than
``WEEKS_KEPT`` before the newest event are pruned, so the map is a function of the set of
events applied, whatever their order (``merge`` adds and prunes the same way).

Reading decays linearly by week (``weights``): this week counts ``WEEKS_KEPT`` times, the
oldest kept week once. Integer weights keep every sum exact, so the best hour a replay
finds is the one the live engine found, ties included.

>>> hours: dict[int, int] = {}
>>> t = 63_000_000  # 1970-01-01T17:30Z, a Thursday
>>> add(hours, "email_opened", t, "1970-01-01T19:30:00+02:00", t)
True
>>> hours  # 19h local on a Thursday: hour 3 * 24 + 19 of the week
{91: 3}
"""

from __future__ import annotations

from typing import TypeVar

from cdpulse.profile.windows import DAY, HOUR

_V = TypeVar("_V")

WEEK = 7 * DAY
HOURS_OF_WEEK = 168
WEEKS_KEPT = 8
# What each kind of activity says about when the customer reads and answers: an open or
# a click is the very thing a send is timed for; an order and a page view are presence.
WEIGHTS: dict[str, int] = {
    "email_opened": 3,
    "email_clicked": 3,
    "order_completed": 2,
    "page_viewed": 1,
}
# The epoch (1970-01-01) was a Thursday: hour 0 since the epoch is hour 72 of its week.
_THURSDAY = 3 * 24


def local_offset(timestamp: object) -> int:
    """The UTC offset (ms) an RFC 3339 timestamp was written with; 0 for Z or a number.

    >>> local_offset("2026-12-05T21:00:00-05:30"), local_offset("2026-12-05T21:00:00Z")
    (-19800000, 0)
    """
    offset = written_offset(timestamp)
    return 0 if offset is None else offset


def written_offset(timestamp: object) -> int | None:
    """The numeric UTC offset (ms) an RFC 3339 timestamp was written with; None for Z or
    an epoch number (no sign of the writer's own time).

    >>> written_offset("2026-12-05T21:00:00+00:00"), written_offset("2026-12-05T21:00:00Z")
    (0, None)
    """
    if not isinstance(timestamp, str) or len(timestamp) < 6 or timestamp[-3] != ":":
        return None
    sign = timestamp[-6]
    if sign not in "+-":
        return None
    hours, minutes = timestamp[-5:-3], timestamp[-2:]
    if not (hours.isdigit() and minutes.isdigit()):
        return None
    offset = int(hours) * HOUR + int(minutes) * 60_000
    return -offset if sign == "-" else offset


def hour_of_week(local_ms: int) -> int:
    """The hour of the week (0 = Monday 00h) of a local time in ms since the epoch."""
    return (local_ms // HOUR + _THURSDAY) % HOURS_OF_WEEK


def add(hours: dict[int, int], event_type: str, t: int, timestamp: object, newest: int) -> bool:
    """Count an event at UTC time ``t`` (written as ``timestamp``) into ``hours``; False
    when its type says nothing about reachability or its week is no longer kept
    (``newest`` is the newest event time of the profile, this event included)."""
    weight = WEIGHTS.get(event_type)
    if weight is None:
        return False
    week = t // WEEK
    if week <= newest // WEEK - WEEKS_KEPT:
        return False
    key = week * HOURS_OF_WEEK + hour_of_week(t + local_offset(timestamp))
    hours[key] = hours.get(key, 0) + weight
    return True


def moved(before: int, after: int) -> bool:
    """Whether the newest event time moved to a later week (pruning is then due)."""
    return after // WEEK != before // WEEK


def prune(hours: dict[int, _V], newest: int, per_week: int = HOURS_OF_WEEK) -> None:
    """Drop the weeks older than ``WEEKS_KEPT`` before the week of ``newest`` (keys are
    ``week * per_week + ...``: hours of the week, or weeks alone for offsets)."""
    floor = (newest // WEEK - WEEKS_KEPT + 1) * per_week
    for key in [k for k in hours if k < floor]:
        del hours[key]


def merge(into: dict[int, int], other: dict[int, int], newest: int) -> None:
    """Add ``other``'s counts into ``into`` and prune at ``newest`` (the merged profile's)."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + count
    prune(into, newest)


def note_offset(
    offsets: dict[int, tuple[int, int]], t: int, timestamp: object, newest: int
) -> None:
    """Keep the UTC offset ``timestamp`` was written with (an event at ``t``) when it is
    its week's newest (ties: the larger offset), the week still kept at ``newest``."""
    offset = written_offset(timestamp)
    week = t // WEEK
    if offset is None or week <= newest // WEEK - WEEKS_KEPT:
        return
    known = offsets.get(week)
    if known is None or (t, offset) > known:
        offsets[week] = (t, offset)


def merge_offsets(
    into: dict[int, tuple[int, int]], other: dict[int, tuple[int, int]], newest: int
) -> None:
    """Each week's newest offset of both sides, pruned at ``newest``."""
    for week, known in other.items():
        mine = into.get(week)
        if mine is None or known > mine:
            into[week] = known
    prune(into, newest, 1)


def weights(hours: dict[int, int], as_of: int) -> dict[int, int]:
    """The decayed histogram at ``as_of``: hour of the week (0 = Monday 00h) -> integer
    weight, for the hours with any."""
    out: dict[int, int] = {}
    this_week = as_of // WEEK
    for key, count in hours.items():
        week, hour = divmod(key, HOURS_OF_WEEK)
        weight = WEEKS_KEPT - (this_week - week)
        if weight > 0:
            out[hour] = out.get(hour, 0) + count * weight
    return out
