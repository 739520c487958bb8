"""The fairness report (models/fairness.py): its figures held to a plain computation and to
scipy's normal tail, the four-fifths rule with its guards, the groups read from a profile,
the simulator's injected bias, and the replay that flags it in a biased shop and flags
nothing in the same shop without it (``cdpulse evaluate fairness``)."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter

import pytest
from pydantic import SecretStr, ValidationError
from scipy.stats import norm

from cdpulse.contract.partitions import partition_of
from cdpulse.models.fairness import (
    ALPHA,
    FOUR_FIFTHS,
    MIN_GROUP,
    UNKNOWN,
    FairnessReport,
    Outcome,
    fairness_report,
    groups_of,
    subject_report,
)
from cdpulse.pipeline.fairness import replay_fairness
from cdpulse.profile.model import Profile
from cdpulse.settings import Settings
from cdpulse.simulate.shop import VIEWS, Bias, Shop


def _population(seed: int, rates: dict[str, float], n: int = 200) -> list[Outcome]:
    rng = random.Random(seed)
    out = []
    for group, rate in rates.items():
        for _ in range(n):
            score = rng.random()
            label = int(rng.random() < score)
            out.append(Outcome({"country": group}, rng.random() < rate, score, label))
    return out


def test_each_group_figure_equals_a_plain_count() -> None:
    outcomes = _population(1, {"DE": 0.5, "FR": 0.35, "NL": 0.48}) + [
        Outcome({"country": "AT"}, True, 0.9, None) for _ in range(5)
    ]
    report = subject_report("model", "churn", "score >= 0.5", outcomes)
    (attribute,) = report.attributes
    by_group = {g.group: g for g in attribute.groups}
    top = max(
        ("DE", "FR", "NL"),
        key=lambda c: sum(o.selected for o in outcomes if o.groups["country"] == c),
    )
    assert attribute.best == top
    chosen_top = [o.selected for o in outcomes if o.groups["country"] == top]
    for group in ("DE", "FR", "NL"):
        members = [o for o in outcomes if o.groups["country"] == group]
        figures = by_group[group]
        rate = sum(o.selected for o in members) / len(members)
        assert figures.members == len(members)
        assert figures.selection_rate == pytest.approx(rate, abs=1e-6)
        assert figures.mean_score == pytest.approx(
            sum(o.score or 0 for o in members) / len(members), abs=1e-6
        )
        assert figures.observed == pytest.approx(
            sum(o.label or 0 for o in members) / len(members), abs=1e-6
        )
        assert figures.calibration_gap == pytest.approx(
            (figures.predicted or 0) - (figures.observed or 0), abs=1e-5
        )
        negatives = [o for o in members if not o.label]
        positives = [o for o in members if o.label]
        assert figures.false_positive_rate == pytest.approx(
            sum(o.selected for o in negatives) / len(negatives), abs=1e-6
        )
        assert figures.false_negative_rate == pytest.approx(
            sum(not o.selected for o in positives) / len(positives), abs=1e-6
        )
        top_rate = sum(chosen_top) / len(chosen_top)
        assert figures.ratio == pytest.approx(rate / top_rate, abs=1e-6)
        if group == top:
            assert figures.p_value is None
            continue
        # the oracle: a pooled two-proportion z-test, two-sided, with scipy's normal tail
        a, b = sum(o.selected for o in members), sum(chosen_top)
        pooled = (a + b) / (len(members) + len(chosen_top))
        z = abs(rate - top_rate) / math.sqrt(
            pooled * (1 - pooled) * (1 / len(members) + 1 / len(chosen_top))
        )
        assert figures.p_value == pytest.approx(2 * norm.sf(z), rel=1e-9)
        assert figures.flagged == (figures.ratio < FOUR_FIFTHS and figures.p_value < ALPHA)
    fprs = [by_group[g].false_positive_rate for g in ("DE", "FR", "NL")]
    known = [f for f in fprs if f is not None]
    assert attribute.fpr_gap == pytest.approx(max(known) - min(known), abs=1e-6)
    small = by_group["AT"]
    assert (small.ratio, small.p_value, small.flagged) == (None, None, False)
    assert small.note == f"not compared: 5 members, fewer than {MIN_GROUP}"
    assert small.false_positive_rate is None  # labels: none


def test_the_four_fifths_rule_needs_both_the_ratio_and_significance() -> None:
    clear = _population(2, {"DE": 0.5, "FR": 0.2}, n=300)
    flagged = subject_report("rule", "win_back", "fired", clear).flagged
    assert len(flagged) == 1 and flagged[0].startswith("rule win_back: country=FR selected")
    # a ratio under 0.8 over few members is not significant: not flagged
    few = _population(3, {"DE": 0.5, "FR": 0.35}, n=40)
    assert subject_report("rule", "r", "fired", few).flagged == []
    # a significant gap that keeps four fifths is not flagged either
    close = _population(4, {"DE": 0.5, "FR": 0.45}, n=20_000)
    report = subject_report("rule", "r", "fired", close)
    fr = next(g for g in report.attributes[0].groups if g.group == "FR")
    assert fr.p_value is not None and fr.p_value < ALPHA and not fr.flagged


def test_the_unknown_group_is_shown_and_never_compared() -> None:
    outcomes = _population(5, {"DE": 0.3, UNKNOWN: 0.9}, n=100)
    (attribute,) = subject_report("model", "churn", "s", outcomes).attributes
    assert attribute.best == "DE"
    unknown = next(g for g in attribute.groups if g.group == UNKNOWN)
    assert unknown.note == "not compared: the attribute is unknown for them"
    assert unknown.ratio is None and not unknown.flagged


def test_the_report_corrects_for_every_comparison_it_makes() -> None:
    # 100 and 74 of 200 selected: p about 0.009, flagged alone, not among 12 comparisons
    # (0.05 / 12 = 0.004)
    outcomes = [
        Outcome({"country": country}, i < chosen)
        for country, chosen in (("DE", 100), ("FR", 74))
        for i in range(200)
    ]
    alone = subject_report("rule", "a", "fired", outcomes)
    fr = next(g for g in alone.attributes[0].groups if g.group == "FR")
    assert fr.p_value is not None and ALPHA / 12 < fr.p_value < ALPHA and fr.flagged
    many = fairness_report(
        "test", None, [subject_report("rule", f"r{i}", "fired", outcomes) for i in range(12)]
    )
    assert many.flagged == []
    assert all(not g.flagged for s in many.subjects for a in s.attributes for g in a.groups)


def test_groups_are_read_from_the_profile() -> None:
    profile = Profile(
        id="C-1",
        customer_id="C-1",
        channels={"web": 3, "app": 3, "email": 1},
        orders=2,
        traits={"country": (1, "FR"), "plan": (1, None)},
    )
    assert groups_of(profile, ["channel", "tenure", "country", "plan", "language"]) == {
        "channel": "app",  # a tie: by name
        "tenure": "returning",
        "country": "FR",
        "plan": UNKNOWN,
        "language": UNKNOWN,
    }
    assert groups_of(Profile(id="A-1"), ["channel", "tenure"]) == {
        "channel": UNKNOWN,
        "tenure": "new",
    }


def test_group_attributes_are_declared_traits_never_personal_ones() -> None:
    Settings(fairness_groups=["country", "plan", "channel", "tenure"])
    with pytest.raises(ValidationError, match="a personal trait"):
        Settings(fairness_groups=["email"])
    with pytest.raises(ValidationError, match="neither channel, tenure"):
        Settings(fairness_groups=["shoe_size"])


def test_the_injected_bias_sends_one_country_views_again_and_nothing_else() -> None:
    plain = list(Shop(customers=60, days=5, seed=8).events())
    biased_shop = Shop(customers=60, days=5, seed=8, bias=Bias("FR", 3))
    biased = list(biased_shop.events())
    french = {
        i
        for c in biased_shop.customers
        if c.country == "FR"
        for i in (c.customer_id, c.anonymous_id)
        if i is not None
    }

    def counted(events: list[dict[str, object]]) -> Counter[tuple[object, ...]]:
        keys = ("type", "customer_id", "anonymous_id", "properties")
        return Counter(tuple(json.dumps(e.get(k), sort_keys=True) for k in keys) for e in events)

    extra = counted(biased) - counted(plain)
    assert not counted(plain) - counted(biased)  # nothing lost or changed
    assert extra and all(json.loads(k[0]) in VIEWS for k in extra)
    for key, n in extra.items():
        who = json.loads(key[1]) or json.loads(key[2])
        assert who in french and n == 2 * counted(plain)[key]
    assert len({e["event_id"] for e in biased}) == len(biased)
    with pytest.raises(ValueError, match="2 or more"):
        Bias("FR", 1)


def _report(bias: Bias | None) -> FairnessReport:
    settings = Settings(
        pseudonym_key=SecretStr("k"), topic_partitions=2, fairness_groups=["country"]
    )
    lines = [json.dumps(e).encode() for e in Shop(600, 14, seed=3, bias=bias).events()]
    return asyncio.run(replay_fairness(lines, settings, partition_of))


def test_the_report_flags_an_injected_bias_and_passes_the_unbiased_shop() -> None:
    unbiased = _report(None)
    assert unbiased.flagged == []
    biased = _report(Bias("FR", 3))
    flagged = biased.flagged
    assert flagged, "the bias must be flagged"
    # the rule that reads views favours the biased country: every flag is against FR
    assert all("against" in f and "for FR" in f for f in flagged), flagged
    subjects = {s.name: s for s in biased.subjects}
    (country,) = subjects["high_intent"].attributes
    assert country.best == "FR" and any(g.flagged for g in country.groups)
    assert {s.kind for s in biased.subjects} == {"model", "rule"}
    assert "churn" in subjects
