"""Distinct counts from the day flags: customers per day and week, new and returning,
repeat buyers, cohorts.

What a profile contributes is a function of its ``Activity`` (``contribute``): every
flag set on a day counts the customer once in that day's counter and in its week's, its
first visit's day is a new visitor's, an order day after its first order's a repeat
buyer's, and its first order's week is its cohort. The counters in the store are the sum
of what every profile contributed, so a change to one profile's state moves them by the
difference: ``set_flags`` counts what an event adds (by the difference only where a
late event moves the first visit or order), ``merge`` what joining two customers does.
"""

from __future__ import annotations

from collections.abc import Iterable

from cdpulse.kpis.fields import (
    ACTIVE,
    COHORT,
    COHORT_SIZE,
    DAY,
    FLAG_METRICS,
    GROUPS,
    NEW_FIELDS,
    ORDER,
    ORDERING,
    REPEAT_FIELDS,
    VISIT,
    WEEK,
    flag_metric,
    week_of,
)
from cdpulse.kpis.tally import Tally
from cdpulse.profile.activity import DAYS_KEPT, Activity

FLAGS = tuple(FLAG_METRICS)
# The ORDER bit of every group: which channels a customer ordered through.
ORDER_BITS = sum(ORDER << (8 * g) for g in range(GROUPS))
VISIT_BITS = sum(VISIT << (8 * g) for g in range(GROUPS))


def _names(bits: int, new: bool, repeat: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields ``bits`` count (split by segment), and the new visitors' and repeat
    buyers' among them (not split)."""
    counted: list[str] = []
    corrected: list[str] = []
    for g in range(GROUPS):
        byte = (bits >> (8 * g)) & 0xFF
        counted += [flag_metric(f, g) for f in FLAGS if byte & f]
        if new and byte & VISIT:
            corrected.append(NEW_FIELDS[g])
        if (repeat >> (8 * g)) & ORDER:
            corrected.append(REPEAT_FIELDS[g])
    return tuple(counted), tuple(corrected)


# (bits, new, repeat) -> ``_names``: a customer's days set few patterns of flags, and
# looking their names up costs a fraction of finding them bit by bit.
_NAMED: dict[tuple[int, bool, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _count(
    tally: Tally, kind: int, day: int, bits: int, sign: int, new: bool, repeat: int, plain: bool
) -> None:
    """Count ``bits`` (day flags) once each; ``new``: VISIT bits are new visitors' too;
    ``repeat``: which of the ORDER bits are a repeat buyer's."""
    key = (bits, new, repeat)
    names = _NAMED.get(key)
    if names is None:
        if len(_NAMED) > 4096:
            _NAMED.clear()
        names = _NAMED[key] = _names(bits, new, repeat)
    counted, corrected = names
    period = (kind, day)
    fields = (tally.plain if plain else tally.segmented).setdefault(period, {})
    for name in counted:
        fields[name] = fields.get(name, 0) + sign
    if corrected:
        fields = tally.plain.setdefault(period, {})
        for name in corrected:
            fields[name] = fields.get(name, 0) + sign


def _week_bits(activity: Activity, week: int, after: int = -1, skip: int | None = None) -> int:
    """The flags of the days of ``week`` (those after epoch day ``after``), OR'ed;
    ``skip``: leave that day out."""
    days = activity.days
    bits = 0
    for day in range(max(week, after + 1), week + 7):
        if day != skip:
            bits |= days.get(day, 0)
    return bits


def contribute(
    activity: Activity,
    days: Iterable[int],
    weeks: Iterable[int],
    sign: int,
    tally: Tally,
    *,
    cohort: Iterable[int] | None = None,
    plain: bool = False,
) -> None:
    """Add ``sign`` times what ``activity`` contributes to the counters of ``days`` and
    ``weeks``; to its cohort's cells of the weeks ``cohort`` (None: the whole cohort,
    its size too). ``plain``: not split by segment (a correction of earlier saves)."""
    first_visit, first_order = activity.first_visit, activity.first_order
    for day in days:
        bits = activity.days.get(day, 0)
        if bits:
            repeat = bits & ORDER_BITS if 0 <= first_order < day else 0
            _count(tally, DAY, day, bits, sign, day == first_visit, repeat, plain)
    for week in weeks:
        bits = _week_bits(activity, week)
        if bits:
            repeat = _week_bits(activity, week, first_order) & ORDER_BITS if first_order >= 0 else 0
            new = first_visit >= 0 and week_of(first_visit) == week
            _count(tally, WEEK, week, bits, sign, new, repeat, plain)
    if first_order < 0:
        return
    start = week_of(first_order)
    if cohort is None:
        tally.add(COHORT, start, COHORT_SIZE, sign, False)
        cohort = {week_of(day) for day in activity.days if day >= start}
    for week in cohort:
        if week >= start:
            _cohort_cell(tally, start, week, _week_bits(activity, week) & 0xFF, sign)


def _cohort_cell(tally: Tally, start: int, week: int, bits: int, sign: int) -> None:
    k = (week - start) // 7
    if bits & VISIT:
        tally.add(COHORT, start, f"{ACTIVE}:{k}", sign, False)
    if bits & ORDER:
        tally.add(COHORT, start, f"{ORDERING}:{k}", sign, False)


def set_flags(activity: Activity, day: int, flags: int, tally: Tally) -> None:
    """Set ``flags`` on epoch day ``day`` and count what that changes."""
    days = activity.days
    old = days.get(day, 0)
    added = flags & ~old
    if not added:
        return  # the common case: the customer did this already that day
    first_visit, first_order = activity.first_visit, activity.first_order
    earlier_visit = flags & VISIT and first_visit > day
    earlier_order = flags & ORDER and first_order > day
    if earlier_visit or earlier_order:
        _move_firsts(activity, day, flags, tally)  # a late event: earlier saves corrected
    else:
        if first_visit < 0 and flags & VISIT:
            activity.first_visit = day
        cohort = first_order < 0 and flags & ORDER
        if cohort:
            activity.first_order = day
        _add_bits(activity, day, old, added, tally, cells=not cohort)
        if cohort:
            contribute(activity, (), (), 1, tally)  # the customer's cohort begins, whole
    if len(days) > DAYS_KEPT:
        del days[min(days)]  # counted already; only a later late event would need it


def _add_bits(
    activity: Activity, day: int, old: int, added: int, tally: Tally, cells: bool = True
) -> None:
    """New flags on a day, the first visit and order staying where they are (or set on
    this day for the first time)."""
    first_visit, first_order = activity.first_visit, activity.first_order
    activity.days[day] = old | added
    repeat = added & ORDER_BITS if 0 <= first_order < day else 0
    _count(tally, DAY, day, added, 1, day == first_visit, repeat, False)
    week = day - (day + 3) % 7
    others = _week_bits(activity, week, skip=day)
    in_week = added & ~others
    if repeat:
        repeat &= ~_week_bits(activity, week, first_order, skip=day)
    if in_week or repeat:
        new = first_visit >= 0 and week_of(first_visit) == week
        _count(tally, WEEK, week, in_week, 1, new, repeat, False)
    if cells and first_order >= 0 and week >= week_of(first_order) and in_week & 0xFF:
        _cohort_cell(tally, week_of(first_order), week, in_week & 0xFF, 1)


def _move_firsts(activity: Activity, day: int, flags: int, tally: Tally) -> None:
    """New flags that move the first visit or the first order to ``day``: counted as
    what the profile contributes after, less what it did before, where that differs."""
    first_visit, first_order = activity.first_visit, activity.first_order
    days = {day}
    if flags & VISIT and first_visit >= 0:
        days.add(first_visit)  # no longer a new visitor's day
    moves_order = flags & ORDER and (first_order < 0 or day < first_order)
    if moves_order and first_order >= 0:
        # the order days up to the old first order become a repeat buyer's
        days.update(
            d for d, bits in activity.days.items() if day < d <= first_order and bits & ORDER
        )
    weeks = {week_of(d) for d in days}
    cohort = None if moves_order else weeks
    contribute(activity, days, weeks, -1, tally, cohort=cohort)
    activity.days[day] = activity.days.get(day, 0) | flags
    if flags & VISIT and (first_visit < 0 or day < first_visit):
        activity.first_visit = day
    if moves_order:
        activity.first_order = day
    contribute(activity, days, weeks, 1, tally, cohort=cohort)


def merge(into: Activity, other: Activity, tally: Tally) -> Activity:
    """The state of the two customers as one, counting what joining them changes: a day
    both were active on counts once, the earlier first visit and order stand."""
    days = set(into.days) | set(other.days)
    weeks = {week_of(d) for d in days}
    contribute(into, into.days, {week_of(d) for d in into.days}, -1, tally, plain=True)
    contribute(other, other.days, {week_of(d) for d in other.days}, -1, tally, plain=True)
    joined = dict(into.days)
    for day, bits in other.days.items():
        joined[day] = joined.get(day, 0) | bits
    union = Activity(
        days=joined,
        first_visit=_first(into.first_visit, other.first_visit),
        first_order=_first(into.first_order, other.first_order),
    )
    contribute(union, days, weeks, 1, tally, plain=True)
    while len(joined) > DAYS_KEPT:
        del joined[min(joined)]
    return union


def _first(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else min(a, b)


__all__ = ["VISIT_BITS", "contribute", "merge", "set_flags"]
