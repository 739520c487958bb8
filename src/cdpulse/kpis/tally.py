"""The KPI counters one profile's save moves: what ``write.lua`` adds if the save is written.

>>> tally = Tally()
>>> tally.add(DAY, 20458, "orders", 1)
>>> tally.add(DAY, 20458, "orders", 1)
>>> tally.add(DAY, 20458, "visitors", 1, segmented=False)
>>> tally.counters({"vip"})
{'day:2026-01-05': {'orders': 2, 'orders|s:vip': 2, 'visitors': 1}}
"""

from __future__ import annotations

from cdpulse.kpis.fields import DAY, SEGMENT, field, period_name

Period = tuple[int, int]  # (kind, epoch day)

__all__ = ["DAY", "Counters", "Tally"]

# period name -> field -> amount
Counters = dict[str, dict[str, int]]


class Tally:
    """Counter deltas by period and field. ``segmented`` deltas are split by the segments
    the customer is in when the save is made (``counters``): the totals, of events the
    save applies. Corrections of what earlier saves counted (a late event that moves a
    customer's first day, a visitor merged in) are not: the segments that counted them
    then are not known now."""

    __slots__ = ("plain", "segmented")

    def __init__(self) -> None:
        self.segmented: dict[Period, dict[str, int]] = {}
        self.plain: dict[Period, dict[str, int]] = {}

    def add(self, kind: int, day: int, name: str, amount: int, segmented: bool = True) -> None:
        into = self.segmented if segmented else self.plain
        fields = into.get((kind, day))
        if fields is None:
            fields = into[(kind, day)] = {}
        fields[name] = fields.get(name, 0) + amount

    def day(self, day: int) -> dict[str, int]:
        """The segmented counters of epoch day ``day``, to add to in place."""
        fields = self.segmented.get((DAY, day))
        if fields is None:
            fields = self.segmented[(DAY, day)] = {}
        return fields

    def absorb(self, other: Tally) -> None:
        """Add ``other``'s deltas to this tally."""
        for mine, theirs in ((self.segmented, other.segmented), (self.plain, other.plain)):
            for period, fields in theirs.items():
                into = mine.setdefault(period, {})
                for name, amount in fields.items():
                    into[name] = into.get(name, 0) + amount

    def __bool__(self) -> bool:
        return bool(self.segmented or self.plain)

    def counters(self, segments: set[str] | frozenset[str]) -> Counters:
        """The deltas by period name, each segmented total also under each of
        ``segments``; fields that net to zero left out."""
        out: Counters = {}
        for period, fields in self.segmented.items():
            into = dict(fields)
            if segments:
                for name, amount in fields.items():
                    if "|" not in name:
                        for segment in segments:
                            split = field(name, SEGMENT, segment)
                            into[split] = into.get(split, 0) + amount
            out[period_name(*period)] = into
        for period, fields in self.plain.items():
            name = period_name(*period)
            found = out.get(name)
            if found is None:
                out[name] = dict(fields)
                continue
            for field_name, amount in fields.items():
                found[field_name] = found.get(field_name, 0) + amount
        for name, fields in list(out.items()):
            if 0 in fields.values():  # corrections that cancel what the save counted
                kept = {f: n for f, n in fields.items() if n}
                if kept:
                    out[name] = kept
                else:
                    del out[name]
        return out
