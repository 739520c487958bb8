"""Next purchase: the repurchase cycle from the customer's own gaps and the BG/NBD fit, and
the segment fields that read it, lifetime value, the send window and traits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdpulse.cli.main import main
from cdpulse.models.clv import BGNBDParams, GammaGammaParams, LifetimeValue
from cdpulse.models.clv.lifetime import ClvSnapshot, clv_view
from cdpulse.models.next_purchase import next_purchase, next_purchase_view
from cdpulse.models.next_purchase_eval import evaluate
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.windows import DAY
from cdpulse.segments.definitions import parse
from cdpulse.segments.fields import CLV_FIELDS, FIELDS, profile_fields, sample
from cdpulse.segments.membership import decide
from cdpulse.simulate.shop import Shop
from tests.unit.test_evaluate import cdnow_sample_lines

# CDNOW's published BG/NBD parameters, alpha in days (Fader, Hardie & Lee 2005)
CDNOW = BGNBDParams(r=0.243, alpha=30.898, a=0.793, b=2.426)
SNAPSHOT = ClvSnapshot(1, LifetimeValue(CDNOW, GammaGammaParams(p=6.25, q=3.74, v=15.45)), 100)


def customer(orders: int, first: int, last: int, seen: int, **kw: object) -> Profile:
    return Profile(
        id="C-1",
        customer_id="C-1",
        events=orders,
        orders=orders,
        revenue=30.0 * orders,
        first_order_at=first,
        last_order_at=last,
        last_seen=seen,
        **kw,  # type: ignore[arg-type]
    )


def test_without_a_fit_the_cycle_is_the_customers_own_mean_gap() -> None:
    p = customer(4, 0, 60 * DAY, 70 * DAY)
    found = next_purchase(p, None, 70 * DAY)
    assert found is not None
    assert found.cycle_days == 20.0
    assert found.expected_at == 80 * DAY and found.in_days == 10.0
    assert found.p_alive is None
    assert found.reasons == ["4 orders, 20 days apart on average"]


def test_one_order_and_no_fit_says_nothing() -> None:
    assert next_purchase(customer(1, 0, 0, DAY), None, DAY) is None
    assert next_purchase(Profile(id="C-2"), SNAPSHOT.model.purchases, DAY) is None


def test_the_fit_shrinks_few_orders_towards_the_population_and_many_towards_their_own() -> None:
    population = CDNOW.alpha / CDNOW.r  # ~127 days
    few = next_purchase(customer(2, 0, 10 * DAY, 10 * DAY), CDNOW, 10 * DAY)
    many = next_purchase(customer(41, 0, 400 * DAY, 400 * DAY), CDNOW, 400 * DAY)
    assert few is not None and many is not None
    # two orders 10 days apart: far from 10 days, pulled towards the population
    assert 10 < few.cycle_days < population
    assert few.cycle_days == round((CDNOW.alpha + 10) / (CDNOW.r + 1), 1)
    # forty gaps of 10 days: close to 10
    assert many.cycle_days == pytest.approx(10.0, abs=1.0)
    assert "customers like them order every 127 days" in few.reasons


def test_an_overdue_customer_has_a_negative_next_order_and_says_so() -> None:
    found = next_purchase(customer(5, 0, 40 * DAY, 200 * DAY), None, 200 * DAY)
    assert found is not None and found.in_days == -150.0
    assert found.reasons[-1] == "overdue by 150 days"
    view = next_purchase_view(customer(5, 0, 40 * DAY, 200 * DAY), CDNOW, 200 * DAY)
    assert view is not None and view["p_alive"] < 0.5  # a long silence: likely gone


def test_segment_fields_read_next_order_clv_send_hour_and_traits() -> None:
    rules = Rules()
    p = customer(
        4,
        0,
        60 * DAY,
        62 * DAY,
        traits={"country": (0, "DE"), "plan": (0, "pro")},
        # 3 opens at 20h this week (week * 168 + hour of the week)
        send_hours={(62 * DAY // (7 * DAY)) * 168 + 20: 9},
    )
    without_fit = profile_fields(p, rules)
    assert without_fit["next_order_in_days"] == 18.0  # own cycle 20 days, 2 days since
    assert "clv" not in without_fit
    assert without_fit["best_send_hour"] == 20
    assert without_fit["traits"] == {"country": "DE", "plan": "pro"}
    with_fit = profile_fields(p, rules, clv=SNAPSHOT)
    view = clv_view(p, SNAPSHOT, p.last_seen, 90)
    assert with_fit["clv"] == {name: view[name] for name in CLV_FIELDS}
    wanted = next_purchase(p, CDNOW, p.last_seen)
    assert wanted is not None and with_fit["next_order_in_days"] == wanted.in_days


def test_unknown_is_absent_so_a_condition_on_it_makes_no_member() -> None:
    book = parse(
        """
segments:
  - {name: due_soon, when: next_order_in_days < 30.0}
  - {name: valuable, when: clv.expected_value_90d > 1.0 && clv.p_alive > 0.2}
  - {name: evening, when: best_send_hour >= 18}
  - {name: germany, when: traits.country == "DE"}
"""
    )
    nobody = Profile(id="C-9", customer_id="C-9", events=1, last_seen=DAY)
    decision = decide(book, nobody, Rules(), None)
    assert decision.members == frozenset()
    assert set(decision.errors) == {"due_soon", "valuable", "evening", "germany"}
    someone = customer(
        4,
        0,
        60 * DAY,
        62 * DAY,
        traits={"country": (0, "DE")},
        send_hours={(62 * DAY // (7 * DAY)) * 168 + 20: 9},
    )
    decision = decide(book, someone, Rules(), None, SNAPSHOT)
    assert decision.members == frozenset({"due_soon", "valuable", "evening", "germany"})


def test_the_start_up_sample_has_every_new_field() -> None:
    record = sample()
    for name in ("clv", "next_order_in_days", "best_send_hour", "traits"):
        assert name in FIELDS and name in record


# --- cdpulse evaluate next-purchase ------------------------------------------------------


def test_the_next_order_beats_both_mean_gaps_on_the_simulated_shop() -> None:
    result = evaluate(Shop(customers=500, days=60, seed=7).events())
    assert result is not None and result.fitted and result.customers > 50
    assert result.model_mae < result.population_gap_mae
    assert result.model_mae < result.own_gap_mae


def test_the_next_order_beats_both_mean_gaps_on_real_cdnow_orders() -> None:
    # Fader, Hardie & Lee's split: 39 weeks of calibration, 39 weeks held out.
    events = [json.loads(line) for line in cdnow_sample_lines()]
    result = evaluate(events, holdout_days=273)
    assert result is not None and result.fitted and result.customers > 500
    assert result.model_mae < result.population_gap_mae
    assert result.model_mae < result.own_gap_mae


def test_evaluate_commands_print_the_new_models_and_their_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tmp_path / "shop.jsonl"
    events = Shop(customers=120, days=42, seed=5).events()
    shop.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert main(["evaluate", "next-purchase", "--input", str(shop)]) == 0
    out = capsys.readouterr().out
    assert "own cycle shrunk by BG/NBD" in out and "population mean gap" in out
    assert "live, as the worker counts it with the split's fit" in out
    assert main(["evaluate", "send-time", "--input", str(shop), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["scored"] > 0 and 0 <= figures["model_hit_rate"] <= 1
    assert main(["evaluate", "next-purchase", "--input", str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_without_personalization_consent_segments_read_no_model_output() -> None:
    p = customer(
        4,
        0,
        60 * DAY,
        62 * DAY,
        traits={"country": (0, "DE")},
        send_hours={(62 * DAY // (7 * DAY)) * 168 + 20: 9},
        consent={"personalization": (0, False)},
    )
    record = profile_fields(p, Rules(), clv=SNAPSHOT)
    assert "best_send_hour" not in record and "next_order_in_days" not in record
    assert "clv" not in record
    assert record["traits"] == {"country": "DE"}  # a fact about the customer, not a score
