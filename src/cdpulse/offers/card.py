"""The offer policy's model card: per rule, each offer's rewards learned and reward rate.

Its quality is the mean reward of every reward learned (the policy's conversion rate
as logged, exploration included); per offer, ``parameters.rules`` has each one's.

The snapshot is the learner's: it counts the rewards folded in (River's bandit counts an
arm at each ``update``), not the offers the workers chose, which no snapshot records.

>>> from cdpulse.offers.bandit import OfferPolicy
>>> policy = OfferPolicy()
>>> policy.learn("cart", "a", {"bias": 1.0}, 1.0)
>>> offer_card(OfferSnapshot(1, policy, 0), "cdp.offer-rewards").parameters["rules"]
{'cart': {'a': {'rewards': 1, 'reward_rate': 1.0}}}
"""

from __future__ import annotations

from typing import Any

from cdpulse.models.cards import Feature, Figure, ModelCard, TrainingData, drift_of, unassessed
from cdpulse.offers.bandit import OfferSnapshot, features
from cdpulse.profile.model import Profile

CONTEXT = tuple(features(Profile(id="-")))  # the names of the context features
NOT_TRACKED = "not tracked: an offer's reward carries no event time"


def offer_card(snapshot: OfferSnapshot, topic: str) -> ModelCard:
    """The card of the published offer policy; ``topic``: the rewards topic it learns from."""
    rules: dict[str, dict[str, Any]] = {}
    rewards, total = 0, 0.0
    for rule, bandit in sorted(snapshot.policy.bandits.items()):
        arms = {}
        for arm, count in sorted(bandit._counts.items()):
            mean: Any = bandit._rewards[arm]  # River's default reward statistic: a mean
            rate = float(mean.get())
            arms[str(arm)] = {"rewards": int(count), "reward_rate": rate}
            rewards += int(count)
            total += count * rate
        rules[rule] = arms
    return ModelCard(
        name="offers",
        kind="next-best-offer (epsilon-greedy over LinUCB, one bandit per rule)",
        version=snapshot.version,
        examples=rewards,
        importance=(
            "not given: each offer has its own Bayesian linear regression on the context; "
            "no single weight per feature"
        ),
        features=[Feature(name) for name in CONTEXT],
        quality={
            "reward_rate": Figure(total / rewards, "")
            if rewards
            else Figure(None, "no rewards learned yet")
        },
        drift_status="unknown",
        drift=drift_of(None, NOT_TRACKED),
        training=TrainingData(
            topic,
            {"0": snapshot.offset},
            None,
            None,
            "the event time of the rewards learned is not recorded",
        ),
        health=unassessed("offers"),
        parameters={"epsilon": snapshot.policy.epsilon, "rules": rules},
    )
