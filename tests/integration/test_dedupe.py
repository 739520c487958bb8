"""The dedupe window against real Kafka, Redis, worker and api processes: a client's
re-sent batch arriving thousands of events later is dropped within the window and applied
again beyond it, exactly as the oracle says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, drained, wait_until
from tests.integration.test_pipeline import _check_profiles, _send_stream
from tests.oracle import DAY, distinct, links, millis, rfc3339, valid_events

HEAVY, VISITOR = "C-heavy", "anon-heavy"


def view(i: int, t: int, **who: str) -> dict[str, Any]:
    return {
        "event_id": f"heavy-{i}",
        "type": "page_viewed",
        "timestamp": rfc3339(t),
        "channel": "app",
        "properties": {"url": f"https://shop.example/p/{i % 97}"},
        **(who or {"customer_id": HEAVY}),
    }


def test_repeats_after_thousands_of_events_are_dropped_within_the_window(env: Env) -> None:
    shop = list(Shop(customers=40, days=20, seed=4).events())
    start = min(millis(e["timestamp"]) for e in shop)
    # An offline queue: the customer's first 200 app events, re-sent after 4,000 others
    # (five days on), and again after 12 more days (beyond the window: applied again);
    # a visitor's events re-sent after the identify that merged the visitor in.
    queued = [view(i, start + i * 1000) for i in range(200)]
    visiting = [view(10_000 + i, start + i * 1000, anonymous_id=VISITOR) for i in range(50)]
    later = [view(200 + i, start + DAY + i * 5 * DAY // 4_000) for i in range(4_000)]
    identify = {
        "event_id": "heavy-login",
        "type": "identify",
        "timestamp": rfc3339(start + 5 * DAY),
        "channel": "app",
        "customer_id": HEAVY,
        "anonymous_id": VISITOR,
    }
    much_later = [view(5_000 + i, start + 18 * DAY + i * 1000) for i in range(100)]
    # Sent in two rounds: the visitor's key may sit on another partition than the
    # customer's, and its repeats must arrive before the customer moves 18 days on.
    rounds = [
        [*shop, *visiting, *queued, *later, identify, *queued, *visiting],
        [*much_later, *queued],
    ]
    events = [e for r in rounds for e in r]

    worker = env.worker()
    api = env.api()
    for sent in rounds:
        _send_stream(env, [(e, None) for e in sent])
        wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")

    valid = valid_events(events, now=datetime.now(UTC))
    repeats = len(valid) - len(distinct(valid, links(valid)))
    # The first re-send (within the window) and the visitor's are dropped; the last
    # (its first copies 18 days old) is applied again.
    assert repeats == len(queued) + len(visiting)
    assert worker.metric("cdpulse_duplicates_total") == repeats
    assert worker.metric("cdpulse_dedupe_ids_dropped_total") == 0
    # Every batch taken is timed once at each of its steps.
    steps = [
        worker.metric("cdpulse_batch_step_seconds_count", {"step": step})
        for step in ("waited", "decided", "written")
    ]
    assert steps[0] >= len(events) / env.settings.batch_size and steps == [steps[0]] * 3, steps
    _check_profiles(api, env, events)
