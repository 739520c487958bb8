"""What an expiry pass turns into: trigger documents, uplift counts, bandit rewards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cdpulse.contract.outputs import RecommendedItem
from cdpulse.contract.trigger import ChosenOffer, TriggerMessage
from cdpulse.models.reco import Context
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.models.send_time import deliver_at
from cdpulse.offers.bandit import Reward
from cdpulse.profile.model import Profile
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.engine import Expired
from cdpulse.triggers.rules import TriggerConfig

RECOMMENDED = 5


def trigger_messages(
    expired: Expired,
    config: TriggerConfig,
    snapshot: RecoSnapshot | None,
    policy: str,
    pseudonym: Callable[[str], str],
) -> list[TriggerMessage]:
    """One document per fired decision; holdouts and suppressed ones send nothing.

    ``pseudonym`` names a profile as the recommender knows its customer (the worker's
    item events carry it): the list a message carries leaves out what they bought.
    """
    out = []
    for decision in expired.decisions:
        rule = config.named(decision.pending.rule)
        if decision.outcome != "fired" or rule is None:
            continue
        profile = expired.profiles.get(decision.customer_id)
        recommended = _recommended(profile, snapshot, pseudonym)
        deliver = None
        if rule.at_best_window and profile is not None:
            deliver = deliver_at(profile, decision.pending.at)
        out.append(_message(decision, rule.kind, recommended, policy, deliver))
    return out


@dataclass(frozen=True, slots=True)
class Tally:
    """One uplift counter increment, counted once: the profile's save claims ``claim``."""

    customer_id: str
    claim: str
    rule: str
    counter: str


def uplift_tallies(expired: Expired) -> list[Tally]:
    """Exposures when decided (fired or holdout), conversions when attributed."""
    out = []
    for d in expired.decisions:
        if d.outcome in ("fired", "holdout"):
            counter = "treated" if d.outcome == "fired" else "holdout"
            out.append(Tally(d.customer_id, d.trigger_id, d.pending.rule, counter))
    for a in expired.attributions:
        if a.converted:
            group = "holdout" if a.exposure.holdout else "treated"
            claim = f"{a.exposure.trigger_id}:converted"
            out.append(Tally(a.customer_id, claim, a.exposure.rule, f"{group}_converted"))
    return out


def _recommended(
    profile: Profile | None, snapshot: RecoSnapshot | None, pseudonym: Callable[[str], str]
) -> list[RecommendedItem]:
    if snapshot is None or profile is None:
        return []
    context = Context.from_profile(profile)
    items = snapshot.recommender.recommend(pseudonym(profile.id), context, k=RECOMMENDED)
    return [RecommendedItem(product_id=r.product_id, score=r.score, reason=r.reason) for r in items]


def _message(
    decision: Decision,
    kind: str,
    recommended: list[RecommendedItem],
    policy: str,
    deliver: int | None,
) -> TriggerMessage:
    pending, choice = decision.pending, decision.choice
    offer = None
    if choice is not None:
        offer = ChosenOffer(
            offer_id=choice.offer,
            propensity=choice.propensity,
            policy=policy,
            features=dict(choice.features),
        )
    return TriggerMessage(
        trigger_id=decision.trigger_id,
        rule=pending.rule,
        kind=kind,
        customer_id=decision.customer_id,
        situation=pending.key,
        at=_utc(pending.at),
        reasons=list(pending.reasons),
        products=list(pending.products),
        recommended=recommended,
        offer=offer,
        deliver_at=None if deliver is None else _utc(deliver),
    )


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, UTC)


def rewards(expired: Expired) -> list[Reward]:
    """The bandit's lessons: each closed window of a sent offer, 1 if it converted."""
    return [
        Reward(
            e.rule,
            e.offer,
            dict(e.features),
            1.0 if a.converted else 0.0,
            e.propensity,
            e.trigger_id,
        )
        for a in expired.attributions
        if (e := a.exposure).offer and not e.holdout
    ]
