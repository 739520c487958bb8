"""Next-best-offer: one contextual bandit per rule picks an offer from the profile's features.

River's ``LinUCBDisjoint`` scores each offer (a Bayesian linear regression per arm) and
its upper-confidence pick is taken with probability 1 - epsilon; otherwise an offer is
drawn uniformly. The mixture makes every offer's probability known and non-zero, so each
firing logs the propensity of its offer and a new policy can be evaluated off-line by
inverse propensity weighting. The draw is seeded by the trigger id: a replay with the
same model state picks the same offer.

>>> policy = OfferPolicy(epsilon=0.2)
>>> choice = policy.choose("cart", ["a", "b"], {"bias": 1.0}, "cart:C-1:e1")
>>> choice.offer in ("a", "b"), choice.propensity in (0.9, 0.1)
(True, True)
>>> policy.choose("cart", ["a", "b"], {"bias": 1.0}, "cart:C-1:e1") == choice
True
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass

from river import bandit

from cdpulse.offers.choice import Chooser, OfferChoice
from cdpulse.profile.model import Profile

DAY = 86_400_000


def features(profile: Profile) -> dict[str, float]:
    """The context an offer is chosen in: value, recency, risk and the open cart."""
    last_order = profile.last_order_at
    since = 365 * DAY if last_order is None else profile.last_seen - last_order
    recency = min(1.0, since / (365 * DAY))
    cart = sum(sum(d for _, d in line.changes) for line in profile.cart.values())
    return {
        "bias": 1.0,
        "orders": math.log1p(profile.orders),
        "revenue": math.log1p(max(profile.revenue, 0.0)) / 10,
        "recency": recency,
        "churn_risk": profile.churn_risk if profile.churn_risk is not None else 0.5,
        "cart_items": math.log1p(max(cart, 0)),
    }


class OfferPolicy:
    """Epsilon-greedy over LinUCB, one bandit per rule; learns from attributed rewards."""

    def __init__(self, epsilon: float = 0.1, alpha: float = 1.0) -> None:
        if not 0 < epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")
        self.epsilon = epsilon
        self.alpha = alpha
        self.bandits: dict[str, bandit.LinUCBDisjoint] = {}

    def _bandit(self, rule: str) -> bandit.LinUCBDisjoint:
        if rule not in self.bandits:
            self.bandits[rule] = bandit.LinUCBDisjoint(alpha=self.alpha, seed=0)
        return self.bandits[rule]

    def choose(
        self, rule: str, offers: list[str], context: dict[str, float], trigger: str
    ) -> OfferChoice:
        """The offer for ``trigger`` and the probability this policy had of choosing it."""
        if not offers:
            raise ValueError(f"rule {rule!r} has no offers to choose from; list some or none")
        arms: list[str] = sorted(offers)
        greedy = str(self._bandit(rule).pull(list[bandit.base.ArmID](arms), context=context))
        rng = random.Random(trigger)
        explore = rng.random() < self.epsilon
        offer = rng.choice(arms) if explore else greedy
        uniform = self.epsilon / len(arms)
        propensity = uniform + (1 - self.epsilon if offer == greedy else 0.0)
        return OfferChoice(offer, round(propensity, 6), dict(context))

    def learn(self, rule: str, offer: str, context: dict[str, float], reward: float) -> None:
        """One attributed outcome: ``reward`` 1 when the customer converted, else 0."""
        self._bandit(rule).update(offer, context, reward)  # type: ignore[no-untyped-call]

    def chooser(self, profile: Profile) -> Chooser:
        """The engine's chooser for one profile: its features as the context, computed
        when an offer is first chosen (a profile whose due triggers fire none, or fire
        rules without offers, never needs them)."""
        context: dict[str, float] | None = None

        def choose(rule: str, offers: list[str], trigger: str) -> OfferChoice:
            nonlocal context
            if context is None:
                context = features(profile)
            return self.choose(rule, offers, context, trigger)

        return choose


@dataclass(frozen=True, slots=True)
class Reward:
    """One closed attribution window of an offer: what the offer learner folds in."""

    rule: str
    offer: str
    features: dict[str, float]
    reward: float
    propensity: float
    trigger_id: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Reward:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class OfferSnapshot:
    """A published offer policy and the last offer-rewards offset it has learned."""

    version: int
    policy: OfferPolicy
    offset: int
