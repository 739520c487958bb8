"""Next-best-offer: the bandit learns which offer converts in which context, and says how
likely each choice was; uplift compares fired customers with the holdout."""

from __future__ import annotations

import pickle
import random

import pytest

from cdpulse.offers.bandit import OfferPolicy, OfferSnapshot, Reward, features
from cdpulse.offers.evaluation import estimate
from cdpulse.offers.uplift import uplift
from cdpulse.profile.model import Profile

OFFERS = ["a", "b", "c"]
# P(convert | context, offer): "a" suits x=1, "b" suits x=0, "c" suits nobody.
RATES = {1: {"a": 0.6, "b": 0.1, "c": 0.05}, 0: {"a": 0.1, "b": 0.6, "c": 0.05}}


def context(x: int) -> dict[str, float]:
    return {"bias": 1.0, "x": float(x)}


def test_the_bandit_learns_the_offer_that_converts_in_each_context() -> None:
    rng = random.Random(4)
    policy = OfferPolicy(epsilon=0.1)
    late: list[float] = []
    for i in range(3000):
        x = rng.randint(0, 1)
        choice = policy.choose("cart", OFFERS, context(x), f"cart:C-{i}:e{i}")
        reward = float(rng.random() < RATES[x][choice.offer])
        policy.learn("cart", choice.offer, context(x), reward)
        if i >= 2000:
            late.append(reward)
    uniform = sum(sum(r.values()) / 3 for r in RATES.values()) / 2  # 0.25
    assert sum(late) / len(late) > uniform + 0.2
    greedy = {x: policy.choose("cart", OFFERS, context(x), "probe").offer for x in (0, 1)}
    assert greedy == {0: "b", 1: "a"}


def test_the_logged_propensity_is_the_probability_of_the_choice() -> None:
    policy = OfferPolicy(epsilon=0.3)
    for _ in range(50):
        policy.learn("cart", "a", context(1), 1.0)
        policy.learn("cart", "b", context(1), 0.0)
        policy.learn("cart", "c", context(1), 0.0)
    choices = [policy.choose("cart", OFFERS, context(1), f"t{i}") for i in range(20_000)]
    for offer in OFFERS:
        share = sum(c.offer == offer for c in choices) / len(choices)
        logged = {c.propensity for c in choices if c.offer == offer}
        assert len(logged) == 1
        assert share == pytest.approx(logged.pop(), abs=0.01)
    # inverse propensity weighting recovers a uniform policy's value from these logs
    ips = sum((c.offer == "a") / c.propensity for c in choices) / len(choices) / len(OFFERS)
    assert ips == pytest.approx(1 / 3, abs=0.02)


def test_a_choice_is_reproducible_and_policies_survive_pickling() -> None:
    policy = OfferPolicy()
    policy.learn("cart", "a", context(1), 1.0)
    snapshot = pickle.loads(pickle.dumps(OfferSnapshot(3, policy, 41)))
    for i in range(50):
        trigger = f"cart:C-1:e{i}"
        assert snapshot.policy.choose("cart", OFFERS, context(1), trigger) == policy.choose(
            "cart", OFFERS, context(1), trigger
        )
    reward = Reward("cart", "a", context(1), 1.0, 0.9333, "cart:C-1:e1")
    assert Reward.from_json(reward.to_json()) == reward


def test_features_of_a_new_and_a_loyal_customer() -> None:
    new = features(Profile(id="C-1"))
    assert new == {
        "bias": 1.0,
        "orders": 0.0,
        "revenue": 0.0,
        "recency": 1.0,
        "churn_risk": 0.5,
        "cart_items": 0.0,
    }
    loyal = features(
        Profile(id="C-2", orders=9, revenue=999.0, last_order_at=0, last_seen=0, churn_risk=0.1)
    )
    assert loyal["orders"] > new["orders"] and loyal["recency"] == 0.0
    assert loyal["churn_risk"] == 0.1


def test_an_empty_offer_list_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="rule 'cart' has no offers"):
        OfferPolicy().choose("cart", [], context(1), "t")


def test_uplift_needs_both_groups() -> None:
    report = uplift("cart", {"treated": 10, "treated_converted": 3})
    assert report["uplift"] is None and report["holdout"]["rate"] is None
    assert report["treated"]["rate"] == 0.3


def test_a_policy_is_valued_off_line_from_the_logged_propensities() -> None:
    """Logged by the epsilon-greedy bandit, the value of "always the offer that suits the
    context" is recovered without sending it, close to its true conversion rate."""
    rng = random.Random(9)
    policy = OfferPolicy(epsilon=0.5)
    logs = []
    for i in range(6000):
        x = rng.randint(0, 1)
        choice = policy.choose("cart", OFFERS, context(x), f"t{i}")
        reward = float(rng.random() < RATES[x][choice.offer])
        logs.append(Reward("cart", choice.offer, context(x), reward, choice.propensity, f"t{i}"))
        policy.learn("cart", choice.offer, context(x), reward)

    def best(rule: str, offers: list[str], features: dict[str, float]) -> dict[str, float]:
        return {"a" if features["x"] == 1.0 else "b": 1.0}

    def worst(rule: str, offers: list[str], features: dict[str, float]) -> dict[str, float]:
        return {"c": 1.0}

    assert estimate(logs, best, OFFERS)["snips"] == pytest.approx(0.6, abs=0.03)
    assert estimate(logs, worst, OFFERS)["snips"] == pytest.approx(0.05, abs=0.03)
    with pytest.raises(ValueError, match="propensity must be in"):
        estimate([Reward("cart", "a", {}, 1.0, 0.0, "t0")], best, OFFERS)
