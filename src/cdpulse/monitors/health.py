"""Whether a model's inputs were healthy, per event-time hour: the verdicts that gate its
triggers. Pure.

A model declares its inputs (``GateSpec``, in the trigger rules file under ``gates:``):
the optional fields it reads (a producer sending them null breaks it), the amounts it
reads (a unit change, cents for euros, breaks it) and the streams it counts (a stalled
stream starves it). ``InputHealth`` keeps, per event-time hour, the counts a verdict
needs and judges each hour once it is complete (``judge``): a hour is *flagged* with
the first of these reasons, else healthy:

* ``nulls:<type>.<field>``: at least ``null_share`` of the hour's events of that type
  sent the field absent, while the healthy hours before it (``BASELINE_HOURS``) sent it
  absent less than half as often;
* ``unit:<type>.<field>``: the hour's mean amount is ``unit_ratio`` times the median
  of the healthy hours' means or more (or that much smaller);
* ``stalled:<stream>``: no event of the stream in a hour where the other streams had
  some, while the same hour a day before (healthy) had ``min_events`` or more: a shop's
  night is quiet on the clickstream while a newsletter's opens arrive, and an average
  over the day's hours took that for a stall.

Each verdict needs ``min_events`` in the hour and in its baseline: unknown is healthy (a
gate that holds on no evidence would hold every new shop). Flagged hours stay out of the
baselines, so a producer that stays broken stays flagged, and one that is fixed reads
healthy from its first complete good hour on.

Judging and deciding share one clock, the low watermark (every input partition's event
time, shared in Redis). A worker judges hour ``h`` once the low watermark passes its end
plus ``LATE`` (every partition has moved past it: the hour's events are in), adds its
flags to Redis, then marks its partitions judged through ``h`` (``store/gate.py``). The
flags and marks of every worker make the trigger side's ``Gate``: a gated rule's
situation at event time ``t`` is decided once the watermark passes the end of ``t``'s
hour plus ``SETTLE`` *and* every partition is marked judged through that hour; until
then it is held. Flags of a hour every partition has judged are never added again, so a
replayed batch reads the very flags its first attempt read and decides the same.

>>> spec = GateSpec(min_events=2)
>>> health = InputHealth({"churn": spec})
>>> ok = [("order_completed", h * HOUR, {"revenue": 50.0}) for h in range(4)]
>>> cents = [("order_completed", h * HOUR + 1, {"revenue": 5000.0}) for h in range(4, 8)]
>>> health.observe_all(ok + ok + cents + cents)
>>> health.judge(through=8)
{'churn': {4: 'unit:order_completed.revenue', 5: 'unit:order_completed.revenue', \
6: 'unit:order_completed.revenue', 7: 'unit:order_completed.revenue'}}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cdpulse.contract.topics import STREAM_OF_TYPE

HOUR = 3_600_000
# A hour is judged once the low watermark is this far past its end (late events count)...
LATE = 10 * 60_000
# ...and a gated situation decided once it is this far past its hour's end: every worker
# has judged the hour by then, unless one lags (then the marks hold it: ``Gate``).
SETTLE = HOUR
BASELINE_HOURS = 24
STREAMS = ("clickstream", "transactions", "customers")


class GateSpec(BaseModel):
    """What a model reads from the input topics, and when that input counts as broken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] = Field(
        default_factory=list,
        description="Optional properties the model reads, as type.field: nulls break it.",
    )
    amounts: list[str] = Field(
        default_factory=lambda: ["order_completed.revenue"],
        description="Amounts the model reads, as type.field: a unit change breaks it.",
    )
    streams: list[str] = Field(
        default_factory=lambda: ["clickstream", "transactions"],
        description="Streams the model counts: a stall starves it.",
    )
    null_share: float = Field(0.5, gt=0, le=1, description="Absent share that breaks a field.")
    unit_ratio: float = Field(10.0, gt=1, description="Mean amount ratio that is a unit change.")
    min_events: int = Field(10, ge=1, description="Events a hour and its baseline need.")
    lookback_hours: int = Field(
        24, ge=0, description="A score at t is held if any of these hours before t is flagged."
    )


def _split(dotted: str) -> tuple[str, str]:
    kind, _, name = dotted.partition(".")
    return kind, name


@dataclass
class InputHealth:
    """Per event-time hour counts of the declared inputs, and the verdicts judged so far."""

    specs: Mapping[str, GateSpec]
    volume: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    nulls: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # absent, present
    amounts: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # sum, count
    judged: int | None = None  # the newest hour judged
    flags: dict[str, dict[int, str]] = field(default_factory=dict)  # model -> hour -> reason

    def __post_init__(self) -> None:
        self._fields = {_split(f) for s in self.specs.values() for f in s.fields}
        self._amounts = {_split(f) for s in self.specs.values() for f in s.amounts}

    def observe(self, kind: str, at: int, properties: Any) -> None:
        """One decoded event: its type, event time (ms) and properties (struct or dict)."""
        hour = at // HOUR
        stream = STREAM_OF_TYPE.get(kind)
        if stream is not None:
            self.volume[(stream, hour)] += 1
        for k, name in self._fields:
            if k == kind:
                counts = self.nulls.setdefault((f"{k}.{name}", hour), [0, 0])
                counts[0 if _value(properties, name) is None else 1] += 1
        for k, name in self._amounts:
            if k == kind and (value := _value(properties, name)) is not None:
                sums = self.amounts.setdefault((f"{k}.{name}", hour), [0.0, 0.0])
                sums[0] += float(value)
                sums[1] += 1

    def observe_all(self, events: Iterable[tuple[str, int, Any]]) -> None:
        for kind, at, properties in events:
            self.observe(kind, at, properties)

    def judge(self, through: int) -> dict[str, dict[int, str]]:
        """Judge every hour up to ``through`` not judged yet (``judged_through`` of the
        low watermark); the new flags, by model and hour."""
        if not self.volume:
            return {}
        last = through
        first = min(h for _, h in self.volume) if self.judged is None else self.judged + 1
        new: dict[str, dict[int, str]] = {}
        # Only hours that saw an input can be flagged (a verdict needs ``min_events`` >= 1
        # of the hour's own). Not every hour between: one event dated 1970 made the first
        # judgement walk 500,000 hours, seconds on the worker's loop.
        seen = {h for table in (self.volume, self.nulls, self.amounts) for _, h in table}
        for hour in sorted(h for h in seen if first <= h <= last):
            for model, spec in self.specs.items():
                reason = self._verdict(model, spec, hour)
                if reason is not None:
                    self.flags.setdefault(model, {})[hour] = reason
                    new.setdefault(model, {})[hour] = reason
        if last >= first:
            self.judged = last
            self._prune(last - BASELINE_HOURS - 1)
        return new

    def _baseline(self, model: str, hour: int) -> list[int]:
        flagged = self.flags.get(model, {})
        return [h for h in range(hour - BASELINE_HOURS, hour) if h not in flagged]

    def _verdict(self, model: str, spec: GateSpec, hour: int) -> str | None:
        base = self._baseline(model, hour)
        for name in spec.fields:
            absent, present = self.nulls.get((name, hour), (0, 0))
            was = [self.nulls.get((name, h), (0, 0)) for h in base]
            was_absent, was_n = sum(a for a, _ in was), sum(a + p for a, p in was)
            if absent + present < spec.min_events or was_n < spec.min_events:
                continue
            share = absent / (absent + present)
            if share >= spec.null_share and was_absent / was_n < spec.null_share / 2:
                return f"nulls:{name}"
        for name in spec.amounts:
            total, n = self.amounts.get((name, hour), _NONE)
            seen = [self.amounts[(name, h)] for h in base if (name, h) in self.amounts]
            if n == 0 or total <= 0 or sum(c for _, c in seen) < spec.min_events:
                continue
            # The median hour, not the pooled mean: one broken hour that no baseline could
            # judge (the first ones) must not shift the scale every later hour is read on.
            usual = sorted(t / c for t, c in seen)[(len(seen) - 1) // 2]
            ratio = (total / n) / usual if usual > 0 else 1.0
            if ratio >= spec.unit_ratio or ratio <= 1 / spec.unit_ratio:
                return f"unit:{name}"
        others = sum(self.volume.get((s, hour), 0) for s in STREAMS)
        for stream in spec.streams:
            mine = self.volume.get((stream, hour), 0)
            if mine or others == 0 or not base:
                continue
            yesterday = hour - 24
            if yesterday not in base:
                continue  # flagged or before the history: unknown is healthy
            if self.volume.get((stream, yesterday), 0) >= spec.min_events:
                return f"stalled:{stream}"
        return None

    def _prune(self, oldest: int) -> None:
        """Forget hours no baseline reads any more."""
        for table in (self.volume, self.nulls, self.amounts):
            for key in [k for k in table if k[1] < oldest]:
                del table[key]
        for hours in self.flags.values():
            for hour in [h for h in hours if h < oldest]:
                del hours[hour]


_NONE = [0.0, 0.0]


def judged_through(low_watermark: int) -> int:
    """The newest hour every partition is ``LATE`` past at ``low_watermark`` (-1: none).

    >>> judged_through(2 * HOUR + LATE), judged_through(2 * HOUR + LATE - 1)
    (1, 0)
    """
    return max(-1, (low_watermark - LATE) // HOUR - 1)


def _value(properties: Any, name: str) -> Any:
    if isinstance(properties, dict):
        return properties.get(name)
    return getattr(properties, name, None)


@dataclass(frozen=True, slots=True)
class Gate:
    """The flags of every model and how far every partition is judged: the trigger side.

    >>> gate = Gate({"churn": {10: "stalled:clickstream"}}, settled=10)
    >>> spec = GateSpec(lookback_hours=1)
    >>> gate.due(10 * HOUR + 5) == 11 * HOUR + SETTLE, gate.settled_at(10 * HOUR + 5)
    (True, True)
    >>> [gate.reason("churn", spec, h * HOUR) for h in (9, 10, 11, 12)]
    [None, 'stalled:clickstream', 'stalled:clickstream', None]
    >>> gate.settled_at(11 * HOUR), gate.due(11 * HOUR) == 12 * HOUR + SETTLE
    (False, True)
    """

    flags: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    settled: int | None = None  # every partition judged through this hour (None: not one)

    def settled_at(self, at: int) -> bool:
        """Whether the hour of ``at`` is judged on every partition."""
        return self.settled is not None and self.settled >= at // HOUR

    def due(self, at: int) -> int:
        """When a gated situation at ``at`` may be decided: its hour past by ``SETTLE``, or
        (a partition not judged through it yet) an hour of event time after the hour
        judged everywhere, when it is looked at again."""
        due = (at // HOUR + 1) * HOUR + SETTLE
        if self.settled_at(at) or self.settled is None:
            return due
        return max(due, (self.settled + 2) * HOUR + SETTLE)

    def reason(self, model: str, spec: GateSpec, at: int) -> str | None:
        """Why a score of ``model`` at ``at`` is not trusted (the newest flagged hour of
        the lookback), or None."""
        flagged = self.flags.get(model, {})
        hour = at // HOUR
        for h in range(hour, hour - spec.lookback_hours - 1, -1):
            if h in flagged:
                return flagged[h]
        return None
