"""Personas: features, stable ids across snapshots, words, and the evaluation's figures."""

from __future__ import annotations

import numpy as np

from cdpulse.models.personas import FEATURES, PersonaModel, describe, persona_features
from cdpulse.models.personas_eval import evaluate, silhouette
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.simulate.shop import Shop


def point(**values: float) -> dict[str, float]:
    return {**dict.fromkeys(FEATURES, 0.0), **values}


def test_features_are_read_from_the_profile_with_counts_and_money_logged() -> None:
    p = Profile(
        id="C-1",
        events=10,
        last_seen=2 * DAY,
        orders=3,
        revenue=90.0,
        refunded=30.0,
        channels={"app": 5, "email": 2, "web": 3},
        counts={"offer_shown": 4, "offer_redeemed": 1},
    )
    x = persona_features(p, 5 * DAY)
    assert x["recency_days"] == np.log1p(3.0)
    assert x["orders"] == np.log1p(3.0) and x["net_revenue"] == np.log1p(60.0)
    assert x["average_order_value"] == np.log1p(20.0)
    assert (x["app_share"], x["email_share"], x["offer_use"]) == (0.5, 0.2, 0.25)


def test_persona_ids_stay_with_their_customers_across_snapshots() -> None:
    rng = np.random.default_rng(1)
    defining = {"app": {"app_share": 1.0}, "big": {"orders": 3.0, "net_revenue": 6.0}}
    defining["quiet"] = {"recency_days": 4.0}
    groups = {name: point(**values) for name, values in defining.items()}

    def noisy(name: str) -> dict[str, float]:
        # each group varies a little in what defines it
        return point(**{f: v + rng.normal(0, 0.05) for f, v in defining[name].items()})

    model = PersonaModel(k=3, warmup=30)
    for _ in range(40):
        for name in groups:
            model.learn_one(noisy(name))
    first = model.snapshot()
    assert first is not None
    ids = {name: first.assign(centre) for name, centre in groups.items()}
    assert len(set(ids.values())) == 3
    # More of the same, in another order: each group keeps its id.
    for _ in range(40):
        for name in reversed(list(groups)):
            model.learn_one(noisy(name))
    second = model.snapshot()
    assert second is not None and second.version == 2
    assert {name: second.assign(centre) for name, centre in groups.items()} == ids
    words = {p.id: p.description for p in second.personas}
    assert "mostly in the app" in words[ids["app"]]
    assert "long quiet" in words[ids["quiet"]]


def test_a_centre_near_the_mean_says_so() -> None:
    assert describe([0.1] * len(FEATURES)) == "close to the average customer"


def test_silhouette_of_two_separate_blobs_is_near_one_and_of_one_label_zero() -> None:
    z = np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 10.0], [10.0, 10.1]])
    assert silhouette(z, [0, 0, 1, 1]) > 0.95
    assert silhouette(z, [0, 0, 0, 0]) == 0.0


def test_evaluate_personas_on_the_simulated_shop() -> None:
    result = evaluate(Shop(customers=200, days=45, seed=9).events(), k=4)
    assert result is not None and result.customers > 50
    assert -1 <= result.silhouette <= 1 and -1 <= result.baseline_silhouette <= 1
    # Ids carried by matching keep more customers in their persona than two batch runs.
    assert result.stability > result.baseline_stability
    assert len(result.descriptions) == 4 and all(result.descriptions.values())
