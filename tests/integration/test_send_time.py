"""Send time, next purchase and traits in segments, live on real Kafka, Redis and processes.

A simulated shop is streamed through Kafka; once the worker drained it, the transitions on
the segments topic must put every customer in exactly the segments that the oracle's
profile satisfies, with each condition re-stated here in plain Python over the oracle's
documents (apart from CEL, the engine's fields and ``models/``): the best send hour from
the oracle's ``send_hours``, the next order from its order times. No learner runs, so no
lifetime value is fitted and a condition on ``clv`` holds for nobody (unknown is absent).
The worker's live hit rate of the send window is on /metrics, and every profile document
shows its send window with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, drained, wait_until
from tests.integration.test_segments import published_state, read_topic
from tests.oracle import DAY, WEEKDAYS, expected, millis

SEGMENTS_FILE = """\
rfm: false
segments:
  - name: evening_reader
    when: best_send_hour >= 18
  - name: due_within_a_week
    when: next_order_in_days < 7.0
  - name: german
    when: traits.country == "DE"
  - name: valuable
    when: clv.p_alive >= 0.0
"""

Document = dict[str, Any]


def best_hour(send_hours: dict[str, int]) -> int | None:
    """README (Send time): the centre of the 3-hour window of the day holding most weight;
    ties to the busiest centre, then the earliest; none below one open this week (24)."""
    hourly = [0] * 24
    for name, weight in send_hours.items():
        assert name[:3] in WEEKDAYS
        hourly[int(name[4:6])] += weight
    if sum(hourly) < 24:
        return None
    keys = [(hourly[h - 1] + hourly[h] + hourly[(h + 1) % 24], hourly[h], -h) for h in range(24)]
    return -max(keys)[2]


def next_order_in_days(d: Document) -> float | None:
    """README (Next purchase), without a fit: the own mean gap after the last order."""
    if d["orders"] < 2:
        return None
    first, last = millis(d["first_order_at"]), millis(d["last_order_at"])
    cycle = (last - first) / DAY / (d["orders"] - 1)
    expected_at = last + round(cycle * DAY)
    return round((expected_at - millis(d["last_seen"])) / DAY, 1)


def _evening(d: Document) -> bool:
    if d["consent"]["personalization"] is False:
        return False  # README: consent matrix; no model output without it
    hour = best_hour(d["send_hours"])
    return hour is not None and hour >= 18


def _due(d: Document) -> bool:
    if d["consent"]["personalization"] is False:
        return False
    days = next_order_in_days(d)
    return days is not None and days < 7.0


CONDITIONS: dict[str, Callable[[Document], bool]] = {
    "evening_reader": _evening,
    "due_within_a_week": _due,
    "german": lambda d: d["traits"].get("country") == "DE",
    "valuable": lambda d: False,
}


def test_segments_on_send_hour_next_order_and_traits_follow_the_oracle(
    env: Env, tmp_path: Path
) -> None:
    events = list(Shop(customers=200, days=35, seed=13).events())
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(SEGMENTS_FILE, encoding="utf-8")
    worker = env.worker(CDPULSE_SEGMENTS_FILE=str(definitions))
    api = env.api(CDPULSE_SEGMENTS_FILE=str(definitions))
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")

    profiles = expected(events, now=datetime.now(UTC), as_of=0).profiles
    want = {
        p["customer_id"]: {name for name, holds in CONDITIONS.items() if holds(p)}
        for p in profiles.values()
        if p["customer_id"] is not None
    }
    state = published_state(read_topic(env.settings))
    for customer, segments in want.items():
        have = {s for s, g in state.get(customer, {}).items() if g % 2}
        assert have == segments, (customer, have, segments)
    # Every condition is met by someone and missed by someone (but ``valuable``).
    for name in ("evening_reader", "due_within_a_week", "german"):
        members = sum(name in s for s in want.values())
        assert 0 < members < len(want), (name, members)

    hits = worker.metric("cdpulse_send_time_opens_total", {"outcome": "hit"})
    misses = worker.metric("cdpulse_send_time_opens_total", {"outcome": "miss"})
    assert hits + misses > 50
    windows = 0
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for customer in sorted(want)[:60]:
            document = http.get(f"/v1/profiles/{customer}").json()
            window = document["best_send_window"]
            if document["consent"]["personalization"] is False:
                assert window is None and document["next_purchase"] is None
                continue
            if window is not None:
                windows += 1
                assert window["reason"].startswith("usually active ")
                assert window["hours"] == [(window["hour"] - 1) % 24, (window["hour"] + 1) % 24]
            purchase = document["next_purchase"]
            if document["orders"] >= 2:
                assert purchase is not None and purchase["reasons"]
    assert windows > 10
