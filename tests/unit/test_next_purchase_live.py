"""Next purchase's live quality: the error counted at each repeat order, the same in the
worker's stages and the replay of ``cdpulse evaluate next-purchase``, whatever the cuts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from cdpulse.contract.partitions import partition_of
from cdpulse.models.next_purchase import ERROR, MEASURED, observe_order
from cdpulse.models.next_purchase_eval import fit_at_split
from cdpulse.pipeline.next_purchase_replay import NextPurchaseLive, replay_next_purchase
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop
from tests.oracle import millis
from tests.unit.test_evaluate import cdnow_sample_lines
from tests.unit.test_next_purchase import CDNOW, SNAPSHOT, customer


def counted(profile: Profile, t: int, params: Any = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    observe_order(profile, params, t, counts)
    return counts


def test_a_repeat_order_counts_its_distance_from_the_expected_one_in_whole_seconds() -> None:
    p = customer(3, 0, 20 * DAY, 20 * DAY)  # two gaps of 10 days: expected at day 30
    late = 35 * DAY + 1999  # 5 days and 1.999 s late: whole seconds, truncated
    counts = counted(p, late)
    assert counts == {MEASURED: 1, ERROR + "model": 5 * 86_400 + 1, ERROR + "own_gap": 432_001}
    # With a fit, the model's cycle is the posterior mean (alpha + t_x) / (r + x) days.
    fitted = counted(p, late, CDNOW)
    cycle = (CDNOW.alpha + 20) / (CDNOW.r + 2)
    assert fitted[ERROR + "model"] == abs(20 * DAY + round(cycle * DAY) - late) // 1000
    assert fitted[ERROR + "own_gap"] == counts[ERROR + "own_gap"]


@pytest.mark.parametrize(
    ("profile", "t"),
    [
        (customer(1, 0, 0, 0), 10 * DAY),  # one order before: no cycle of their own
        (customer(3, 0, 20 * DAY, 20 * DAY), 20 * DAY),  # not after the newest order
        (customer(3, 0, 20 * DAY, 20 * DAY), 15 * DAY),  # a late order
        (customer(3, 0, 20 * DAY, 20 * DAY, consent={"personalization": (0, False)}), 30 * DAY),
        (customer(3, 0, 20 * DAY, 20 * DAY, consent={"analytics": (0, False)}), 30 * DAY),
    ],
)
def test_orders_without_a_cycle_after_the_newest_or_without_consent_are_not_counted(
    profile: Profile, t: int
) -> None:
    assert counted(profile, t, CDNOW) == {}


def test_consent_given_for_both_purposes_is_counted() -> None:
    consent = {"personalization": (0, True), "analytics": (0, True)}
    p = customer(3, 0, 20 * DAY, 20 * DAY, consent=consent)
    assert counted(p, 30 * DAY)[MEASURED] == 1


def no_consent(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A shop whose customers never answer the consent banner: both purposes allowed."""
    return [e for e in events if e["type"] != "consent_updated"]


def own_gap_oracle(events: list[dict[str, Any]]) -> tuple[int, int]:
    """README (Next purchase, live quality), in a plain pass over the orders: at each
    order after a customer's newest, with two orders or more before it, the distance from
    the newest order plus their mean gap, in whole seconds; (orders, seconds)."""
    seen: set[str] = set()
    history: dict[str, tuple[int, int, int]] = {}  # customer -> (orders, first, last)
    orders = seconds = 0
    for event in events:
        if event["type"] != "order_completed" or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        t = millis(event["timestamp"])
        n, first, last = history.get(event["customer_id"], (0, t, t))
        if n >= 2 and t > last:
            expected = last + round((last - first) / DAY / (n - 1) * DAY)
            orders, seconds = orders + 1, seconds + abs(expected - t) // 1000
        history[event["customer_id"]] = (n + 1, min(first, t), max(last, t))
    return orders, seconds


def replayed(events: list[dict[str, Any]], clv: Any, batch_size: int) -> NextPurchaseLive:
    lines = [json.dumps(e).encode() for e in events]
    return asyncio.run(
        replay_next_purchase(lines, Settings(), partition_of, clv, batch_size=batch_size)
    )


def test_the_replay_counts_what_a_plain_pass_over_the_orders_says() -> None:
    events = no_consent(Shop(customers=150, days=60, seed=3).events())
    live = replayed(events, None, 500)
    orders, seconds = own_gap_oracle(events)
    assert live.orders == orders > 30
    # Without a fit the model is the own mean gap.
    assert live.error_seconds == {"model": seconds, "own_gap": seconds}
    assert live.mae_days("own_gap") == round(seconds / orders / 86_400, 2)


def test_the_live_counts_are_the_same_however_the_stream_is_cut_and_with_a_fit() -> None:
    events = list(Shop(customers=150, days=60, seed=3).events())
    whole, cut = replayed(events, SNAPSHOT, 500), replayed(events, SNAPSHOT, 37)
    assert (whole.orders, whole.error_seconds) == (cut.orders, cut.error_seconds)
    assert whole.views == cut.views
    assert whole.orders > 10 and whole.error_seconds["model"] != whole.error_seconds["own_gap"]
    # No score shown without personalization consent; reasons on every score shown.
    shown = [v for v in whole.views.values() if v is not None]
    assert shown and None in whole.views.values()
    assert all(v["reasons"] for v in shown)


def test_a_snapshot_pins_the_fit_the_replay_scores_with() -> None:
    events = no_consent(Shop(customers=60, days=40, seed=4).events())
    with_fit = replayed(events, SNAPSHOT, 500)
    without = replayed(events, None, 500)
    assert with_fit.orders == without.orders
    assert with_fit.error_seconds["own_gap"] == without.error_seconds["own_gap"]
    assert with_fit.error_seconds["model"] != without.error_seconds["model"]


def test_on_cdnow_the_live_measure_beats_the_customers_own_mean_gap() -> None:
    # Fader, Hardie & Lee's split (39 weeks + 39): the fit of the first 39 weeks pinned.
    lines = cdnow_sample_lines()
    fit = fit_at_split([json.loads(line) for line in lines], holdout_days=273)
    assert fit is not None
    live = asyncio.run(replay_next_purchase(lines, Settings(), partition_of, fit))
    assert live.orders > 3000
    model, own = live.mae_days("model"), live.mae_days("own_gap")
    assert model is not None and own is not None and model < own
