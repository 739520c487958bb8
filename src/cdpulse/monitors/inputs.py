"""Data quality of the input topics, per topic and event type, in event time.

For every decoded event of a batch (``InputMonitor.observe``):

* **optional fields**: each optional field of its properties and context, present or
  absent (a null is absent): a producer that starts sending nulls shows as a share;
* **values**: prices, quantities, revenues, refunds and cart values, by field: a price
  sent in cents instead of euros shows as a distribution a hundred times higher;
* **categories**: each product category either seen before (within ``CATEGORY_DAYS``
  of event time) or new: a new taxonomy, or garbage, shows as a share of new ones
  (judged once the monitor has a day of history);
* **lateness**: the Kafka append time minus the event time, by topic;
* **freshness**: the newest event time seen, by topic;
* **volume**: events per event-time hour, by topic and type; ``volume()`` gives the
  last complete hour against the mean of the same hour on the ``BASELINE_DAYS`` days
  before it that the monitor watched (a shop is quiet at night: the hour before is no
  baseline), so a stalled topic reads 0; unknown before a day was watched, or while the
  baseline hours had no event.

Volume and freshness count every event; the rest reads one event in ``sample``, chosen
by a hash of its id (``sampled``), so every process and every replay reads the same ones
(at ~8 µs an event read in full, a worker would spend a tenth of its time here).
Rejections by reason are the decoder's (``cdpulse_events_rejected_total``).

>>> from cdpulse.contract.mirror import decode
>>> monitor = InputMonitor()
>>> raw = (b'{"event_id": "e1", "type": "page_viewed", "timestamp": 1700000000000,'
...        b' "anonymous_id": "a", "channel": "web", "properties": {"url": "/"}}')
>>> tally = monitor.observe([("cdp.clickstream", 1700000001.5, decode(raw))])
>>> sorted(tally.fields.items())[:2]
[(('page_viewed', 'context', 'absent'), 1), (('page_viewed', 'referrer', 'absent'), 1)]
>>> tally.lateness, monitor.newest
([('cdp.clickstream', 1.5)], {'cdp.clickstream': 1700000000000})
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cdpulse.contract.mirror import Context

HOUR = 3_600_000
DAY = 86_400_000
BASELINE_DAYS = 7
CATEGORY_DAYS = 7

# The amounts worth a distribution: (event type, field) -> how to read them.
_AMOUNTS: dict[str, tuple[str, ...]] = {
    "product_viewed": ("price",),
    "product_added": ("price", "quantity"),
    "checkout_started": ("cart_value",),
    "order_completed": ("revenue",),
    "order_refunded": ("amount",),
    "offer_redeemed": ("value",),
}
_CONTEXT_FIELDS = tuple(f.name for f in msgspec.structs.fields(Context))


@dataclass
class InputTally:
    """What one batch's events showed (counts to add to the metrics)."""

    fields: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # type, field, state
    values: list[tuple[str, str, float]] = field(default_factory=list)  # type, field, value
    lateness: list[tuple[str, float]] = field(default_factory=list)  # topic, seconds
    categories: Counter[tuple[str, str]] = field(default_factory=Counter)  # type, seen|new


@dataclass
class InputMonitor:
    """The state the monitor keeps between batches: hourly volumes, newest event times,
    the categories seen."""

    hours: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)  # category -> last day seen
    first_hour: int | None = None
    sample: int = 1  # one event in ``sample`` is read for fields, values, lateness, categories

    def observe(self, events: Iterable[tuple[str, float | None, Any]]) -> InputTally:
        """Count a batch of (topic, Kafka timestamp in seconds or None, event) items."""
        tally = InputTally()
        # Every event passes here (the worker's every batch): the state in locals, no
        # dict made per event to throw away, comparisons instead of min().
        hours, newest, sample = self.hours, self.newest, self.sample
        for topic, appended, event in events:
            kind, at = event.type, event.at
            hour = at // HOUR
            counts = hours.get((topic, kind))
            if counts is None:
                counts = hours[(topic, kind)] = {}
            counts[hour] = counts.get(hour, 0) + 1
            if self.first_hour is None or hour < self.first_hour:
                self.first_hour = hour
            if at > newest.get(topic, -1):
                newest[topic] = at
            if sample > 1 and not sampled(event.event_id, sample):
                continue
            if appended is not None:
                tally.lateness.append((topic, max(0.0, appended - at / 1000)))
            self._fields(kind, event, tally)
            self._amounts(kind, event.properties, tally)
            self._categories(kind, at, event.properties, tally)
        self._prune()
        return tally

    def volume(self) -> dict[tuple[str, str], float | None]:
        """Per (topic, type): events in the last complete event-time hour over the mean of
        the same hour on the ``BASELINE_DAYS`` days before it that were watched; None
        before a day was watched, or when those hours had no event."""
        return {key: ratio for key, (ratio, _) in self.volumes().items()}

    def volumes(self) -> dict[tuple[str, str], tuple[float | None, float]]:
        """``volume()`` with the baseline it divides by (mean events an hour; 0 when
        none): an alert on a type with a handful of events an hour would be noise."""
        if self.first_hour is None or not self.hours:
            return {}
        last = max(h for counts in self.hours.values() for h in counts) - 1
        baseline = [
            hour
            for days in range(1, BASELINE_DAYS + 1)
            if (hour := last - 24 * days) >= self.first_hour
        ]
        out: dict[tuple[str, str], tuple[float | None, float]] = {}
        for key, counts in self.hours.items():
            mean = sum(counts.get(h, 0) for h in baseline) / len(baseline) if baseline else 0
            out[key] = (counts.get(last, 0) / mean if mean > 0 else None, mean)
        return out

    def _fields(self, kind: str, event: Any, tally: InputTally) -> None:
        properties = event.properties
        for name in _optional(type(properties)):
            present = getattr(properties, name) is not None
            tally.fields[(kind, name, "present" if present else "absent")] += 1
        context = event.context
        if context is None:
            tally.fields[(kind, "context", "absent")] += 1
            return
        for name in _CONTEXT_FIELDS:
            state = "present" if getattr(context, name) is not None else "absent"
            tally.fields[(kind, f"context.{name}", state)] += 1

    @staticmethod
    def _amounts(kind: str, properties: Any, tally: InputTally) -> None:
        for name in _AMOUNTS.get(kind, ()):
            value = getattr(properties, name, None)
            if value is not None:
                tally.values.append((kind, name, float(value)))
        for item in _line_items(properties):
            if kind == "order_completed":
                tally.values.append((kind, "item_price", float(item.price)))
                tally.values.append((kind, "item_quantity", float(item.quantity)))

    def _categories(self, kind: str, at: int, properties: Any, tally: InputTally) -> None:
        if isinstance(properties, dict):  # a custom event's free-form properties
            return
        found = [getattr(properties, "category", None)]
        found += [getattr(i, "category", None) for i in _line_items(properties)]
        day = at // DAY
        judged = self.first_hour is not None and at - self.first_hour * HOUR >= DAY
        for category in found:
            if category is None:
                continue
            last = self.categories.get(category)
            if judged:
                seen = last is not None and day - last <= CATEGORY_DAYS
                tally.categories[(kind, "seen" if seen else "new")] += 1
            if last is None or day > last:
                self.categories[category] = day

    def _prune(self) -> None:
        """Forget hours no baseline reads any more."""
        if not self.hours:
            return
        oldest = max(h for counts in self.hours.values() for h in counts) - 24 * BASELINE_DAYS - 2
        for counts in self.hours.values():
            for hour in [h for h in counts if h < oldest]:
                del counts[hour]


def _line_items(properties: Any) -> Sequence[Any]:
    """An event's line items; none for a custom event, whose properties are a free-form
    dict (its ``items`` is the dict's method: iterating it crashed the worker's batch)."""
    items = getattr(properties, "items", None)
    return items if isinstance(items, list | tuple) else ()


def sampled(event_id: str, sample: int) -> bool:
    """Whether the event of ``event_id`` is one of the one in ``sample`` read in full.

    >>> sum(sampled(f"e{i}", 10) for i in range(10_000))
    1034
    """
    return zlib.crc32(event_id.encode("utf-8", "surrogatepass")) % sample == 0


_OPTIONAL: dict[type, tuple[str, ...]] = {}


def _optional(kind: type) -> tuple[str, ...]:
    """The fields of a properties struct that may be absent (their default is None)."""
    found = _OPTIONAL.get(kind)
    if found is None:
        fields = msgspec.structs.fields(kind) if issubclass(kind, msgspec.Struct) else ()
        found = _OPTIONAL[kind] = tuple(f.name for f in fields if f.default is None)
    return found
