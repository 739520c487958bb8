"""The input data-quality monitor (monitors/inputs.py) on a simulated shop with injected
problems (simulate/breakage.py): every count held to an oracle that reads the JSON events
the shop sent, written apart from the monitor. ``tests/integration/test_input_quality.py``
holds a real worker's ``/metrics`` to the same oracle."""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdpulse.contract.mirror import decode
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.contract.validation import Rejection, validate
from cdpulse.monitors.inputs import InputMonitor
from cdpulse.simulate.breakage import Nulls, PriceUnit, Stall, broken
from cdpulse.simulate.shop import DEFAULT_START, Shop

HOUR = 3_600_000


def problems(start: datetime = DEFAULT_START) -> list[Nulls | PriceUnit | Stall]:
    """Titles go null on day 2, prices go to cents on day 2, the clickstream stops at 3.5."""
    return [
        Nulls("page_viewed", "title", start + timedelta(days=2)),
        PriceUnit(100, start + timedelta(days=2)),
        Stall("clickstream", start + timedelta(days=3, hours=12)),
    ]


def shop_events(customers: int = 150, days: int = 4) -> list[dict[str, Any]]:
    return list(broken(Shop(customers, days, seed=4).events(), problems()))


def millis(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


# --- the oracle: plain reads of the JSON events ----------------------------------------


def absent(events: list[dict[str, Any]], kind: str, name: str) -> int:
    return sum(1 for e in events if e["type"] == kind and e["properties"].get(name) is None)


def amounts(events: list[dict[str, Any]], kind: str, name: str) -> list[float]:
    if name.startswith("item_"):
        key = name.removeprefix("item_")
        return [
            float(i[key]) for e in events if e["type"] == kind for i in e["properties"]["items"]
        ]
    found = [e["properties"].get(name) for e in events if e["type"] == kind]
    return [float(v) for v in found if v is not None]


def newest(events: list[dict[str, Any]], topics: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        topic = topics[STREAM_OF_TYPE[e["type"]]]
        out[topic] = max(out.get(topic, 0), millis(e))
    return out


def volume(
    events: list[dict[str, Any]], topics: dict[str, str]
) -> dict[tuple[str, str], float | None]:
    """The last complete hour over the mean of the same hour on up to 7 watched days."""
    hours: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for e in events:
        hours[(topics[STREAM_OF_TYPE[e["type"]]], e["type"])][millis(e) // HOUR] += 1
    first = min(h for c in hours.values() for h in c)
    last = max(h for c in hours.values() for h in c) - 1
    same = [last - 24 * d for d in range(1, 8) if last - 24 * d >= first]
    out: dict[tuple[str, str], float | None] = {}
    for key, counts in hours.items():
        mean = sum(counts[h] for h in same) / len(same) if same else 0.0
        out[key] = counts[last] / mean if mean > 0 else None
    return out


STREAMS = {"clickstream": "clickstream", "transactions": "transactions", "customers": "customers"}


def _fed(events: list[dict[str, Any]], sample: int = 1) -> tuple[InputMonitor, Any]:
    monitor = InputMonitor(sample=sample)
    items = []
    for e in events:
        decoded = decode(json.dumps(e).encode())
        assert decoded is not None, e
        items.append((STREAM_OF_TYPE[e["type"]], millis(e) / 1000 + 2.0, decoded))
    tallies = [monitor.observe(items[i : i + 500]) for i in range(0, len(items), 500)]
    total: dict[str, Any] = {
        "fields": Counter(),
        "values": [],
        "lateness": [],
        "categories": Counter(),
    }
    for t in tallies:
        total["fields"].update(t.fields)
        total["values"] += t.values
        total["lateness"] += t.lateness
        total["categories"].update(t.categories)
    return monitor, total


def test_the_monitor_counts_what_the_events_say() -> None:
    events = shop_events()
    monitor, total = _fed(events)
    fields = total["fields"]
    pages = sum(e["type"] == "page_viewed" for e in events)
    assert fields[("page_viewed", "title", "absent")] == absent(events, "page_viewed", "title") > 0
    assert fields[("page_viewed", "title", "present")] == pages - absent(
        events, "page_viewed", "title"
    )
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind, name, value in total["values"]:
        found[(kind, name)].append(value)
    for kind, name in [
        ("product_viewed", "price"),
        ("order_completed", "revenue"),
        ("order_completed", "item_price"),
        ("order_completed", "item_quantity"),
        ("product_added", "quantity"),
    ]:
        assert sorted(found[(kind, name)]) == sorted(amounts(events, kind, name)), (kind, name)
    # the unit change: the median order after day 2 is some hundred times the one before
    cut = millis({"timestamp": (DEFAULT_START + timedelta(days=2)).isoformat()})
    revenues = [
        (millis(e), e["properties"]["revenue"]) for e in events if e["type"] == "order_completed"
    ]
    before = sorted(r for t, r in revenues if t < cut)
    after = sorted(r for t, r in revenues if t >= cut)
    assert after[len(after) // 2] > 20 * before[len(before) // 2]
    assert monitor.newest == newest(events, STREAMS)
    assert monitor.newest["clickstream"] < monitor.newest["transactions"]  # it stalled
    assert monitor.volume() == pytest.approx(volume(events, STREAMS), nan_ok=True)
    assert monitor.volume()[("clickstream", "page_viewed")] == 0.0
    assert all(seconds == pytest.approx(2.0) for _, seconds in total["lateness"])
    assert len(total["lateness"]) == len(events)


def test_categories_are_judged_new_or_seen_once_a_day_was_watched() -> None:
    def viewed(day: float, category: str) -> dict[str, Any]:
        return {
            "event_id": f"v-{day}-{category}",
            "type": "product_viewed",
            "timestamp": (DEFAULT_START + timedelta(days=day)).isoformat(),
            "anonymous_id": "a-1",
            "channel": "web",
            "properties": {"product_id": "P-1", "category": category, "price": 5.0},
        }

    events = [
        viewed(0, "shoes"),
        viewed(0.5, "bags"),
        viewed(1.5, "shoes"),
        viewed(1.6, "junk"),
        viewed(9.7, "shoes"),
    ]
    _, total = _fed(events)
    # day 0: not judged; day 1.5 shoes seen, 1.6 junk new; day 9.7 shoes unseen for 8 days
    assert total["categories"] == Counter(
        {("product_viewed", "seen"): 1, ("product_viewed", "new"): 2}
    )


def test_one_event_in_the_sample_is_read_chosen_by_its_id() -> None:
    events = shop_events(60, 2)
    monitor, total = _fed(events, sample=10)
    chosen = [e for e in events if zlib.crc32(e["event_id"].encode()) % 10 == 0]
    assert 0 < len(chosen) < len(events)
    assert len(total["lateness"]) == len(chosen)
    pages = [e for e in chosen if e["type"] == "page_viewed"]
    fields = total["fields"]
    assert fields[("page_viewed", "title", "present")] + fields[
        ("page_viewed", "title", "absent")
    ] == len(pages)
    # volume and freshness count every event, read or not
    assert monitor.newest == newest(events, STREAMS)
    assert monitor.volume() == pytest.approx(volume(events, STREAMS), nan_ok=True)


def test_a_required_field_sent_null_is_rejected_by_the_contract() -> None:
    start = DEFAULT_START
    events = list(broken(Shop(20, 2, seed=1).events(), [Nulls("product_viewed", "price", start)]))
    viewed = [e for e in events if e["type"] == "product_viewed"]
    now = datetime.now(UTC)
    assert viewed and all(isinstance(validate(e, now=now), Rejection) for e in viewed)


def test_custom_events_with_an_items_property_are_counted_and_never_raise() -> None:
    # A custom event's properties are a free-form dict: its ``items`` is the dict's
    # method, and iterating it raised inside the worker's batch bookkeeping.
    def custom(n: int, properties: dict[str, Any]) -> Any:
        raw = {
            "event_id": f"c-{n}",
            "type": "custom",
            "name": "wishlist_added",
            "timestamp": "2026-01-01T10:00:00.000Z",
            "channel": "web",
            "customer_id": "cust-1",
            "properties": properties,
        }
        event = decode(json.dumps(raw).encode())
        assert event is not None, "the mirror must accept a valid custom event"
        return event

    events = [custom(1, {"items": [{"category": "toys"}]}), custom(2, {"sku": "P-1"})]
    monitor = InputMonitor(sample=1)
    tally = monitor.observe(("clickstream", None, event) for event in events)
    assert not tally.values
    assert not tally.categories
