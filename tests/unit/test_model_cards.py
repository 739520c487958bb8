"""Model cards built from small models trained here, their importances held to an oracle
computed from the same model's weights and scaler; and the api's model routes, in process,
answering from snapshots put where the api's refresh timer would have loaded them."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cdpulse.app import api, triggers
from cdpulse.models.campaign.features import FEATURE_NAMES as CAMPAIGN_FEATURES
from cdpulse.models.campaign.features import vector
from cdpulse.models.campaign.labels import CampaignExample
from cdpulse.models.campaign.model import CampaignLearner
from cdpulse.models.cards import (
    campaign_card,
    campaign_health,
    churn_card,
    clv_card,
    forecast_card,
    next_purchase_card,
    persona_card,
    reco_card,
    send_time_card,
)
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary, refit
from cdpulse.models.forecast import ForecastBook
from cdpulse.models.health import HealthPolicy
from cdpulse.models.personas_learner import PersonaLearner
from cdpulse.models.reco import Recommender, shard_of
from cdpulse.models.reco.ranker import FEATURES as RANKER_FEATURES
from cdpulse.models.reco.ranker import Ranker
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.offers.bandit import OfferPolicy, OfferSnapshot
from cdpulse.offers.card import offer_card
from cdpulse.profile.windows import DAY, MINUTE
from cdpulse.settings import ApiToken, Settings

READ = "read-secret"


def _examples(n: int, seed: int = 3) -> list[tuple[int, Example]]:
    """(offset, example) pairs: churn follows a long silence, with noise in every feature."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        features = [rng.gauss(0.0, 1.0 + j) for j in range(len(FEATURE_NAMES))]
        label = int(rng.random() < 0.5)
        features[FEATURE_NAMES.index("days_since_last_visit")] = rng.uniform(20, 60) * label
        out.append((10 + i, Example(f"C-{i}", (100 + i) * DAY, (130 + i) * DAY, label, features)))
    return out


def _churn(kind: str = "logistic") -> Snapshot:
    learner = ChurnLearner.fresh(kind)
    learner.learn(_examples(300))
    return learner.snapshot()


def test_a_logistic_churn_card_gives_weight_times_deviation_for_every_feature() -> None:
    snapshot = _churn()
    card = churn_card(snapshot, "cdp.training")
    scaler = snapshot.model.pipeline["StandardScaler"]
    weights = snapshot.model.pipeline["LogisticRegression"].weights
    assert [f.name for f in card.features] == list(FEATURE_NAMES)
    for feature in card.features:
        std = math.sqrt(scaler.vars[feature.name])
        raw_weight = weights[feature.name] / std  # the regression learns on x / std
        assert feature.importance == pytest.approx(abs(raw_weight) * std, rel=1e-12)
        assert feature.weight == pytest.approx(raw_weight, rel=1e-12)
    top = max(card.features, key=lambda f: f.importance or 0.0)
    assert top.name == "days_since_last_visit"
    assert "|weight| x standard deviation" in card.importance
    assert (card.version, card.examples) == (1, 300)
    assert card.training.offsets == {"0": 309}
    assert (card.training.event_time_from, card.training.event_time_to) == (100 * DAY, 429 * DAY)
    assert card.training.source == "cdp.training"
    assert card.quality["roc_auc"].value == pytest.approx(round(snapshot.quality.auc, 6))
    assert card.quality["roc_auc"].unknown == ""
    assert card.drift.alarms == snapshot.quality.drifts


def test_a_fresh_churn_card_says_what_is_unknown_and_why() -> None:
    card = churn_card(ChurnLearner.fresh().snapshot(), "cdp.training")
    assert card.quality["roc_auc"].value is None
    assert card.quality["log_loss"].unknown == "no labels yet"
    assert card.drift.alarms_unknown == "no labels yet"
    assert (card.drift_status, card.drift.report) == ("unknown", None)
    assert card.drift.unknown.startswith("no drift report yet")
    assert card.training.event_time_from is None
    assert "not recorded" in card.training.unknown


def test_a_forest_churn_card_gives_permutation_importance_measured_before_learning() -> None:
    learner = ChurnLearner.fresh("forest")
    learner.learn(_examples(600))
    snapshot = learner.snapshot()
    card = churn_card(snapshot, "cdp.training")
    permutation = snapshot.model.permutation
    assert permutation is not None and permutation.measured == 60  # every 10th example
    measured = permutation.importance()
    assert {f.name: f.importance for f in card.features} == measured
    assert card.importance.startswith("permutation importance: the mean increase in log loss")
    assert "(60 examples measured)" in card.importance
    # only the silence tells churners apart here: it matters most, by far
    ranked = sorted(card.features, key=lambda f: -(f.importance or 0.0))
    assert ranked[0].name == "days_since_last_visit"
    assert (ranked[0].importance or 0.0) > 5 * max(abs(f.importance or 0.0) for f in ranked[1:])
    # the same examples give the same importances (a replay agrees with the live learner)
    again = ChurnLearner.fresh("forest")
    again.learn(_examples(600))
    assert again.snapshot().model.permutation.importance() == measured  # type: ignore[union-attr]
    # a forest published before importances were measured says so
    old = ChurnLearner.fresh("forest").snapshot()
    old.model.permutation = None
    unmeasured = churn_card(old, "cdp.training")
    assert all(f.importance is None for f in unmeasured.features)
    assert unmeasured.importance.startswith("not available for this forest")


def _summaries(n: int = 300, seed: int = 5) -> list[OrderSummary]:
    """Customers with their own rate of buying and of dropping out (BG/NBD's story)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rate, p_drop = rng.gammavariate(0.5, 1 / 20), rng.betavariate(1.0, 3.0)
        first = rng.randrange(0, 200) * DAY
        t, last, orders = first, first, 1
        while rng.random() > p_drop:
            t += int(rng.expovariate(rate) * DAY) if rate > 0 else 10**15
            if t > 365 * DAY:
                break
            last, orders = t, orders + 1
        out.append(OrderSummary(orders, first, last, orders * rng.uniform(5, 60)))
    return out


def test_a_clv_card_carries_the_fitted_parameters_and_the_customers_fitted() -> None:
    snapshot = refit(_summaries(), 365 * DAY, None)
    assert snapshot is not None
    card = clv_card(snapshot)
    purchases, spend = snapshot.model.purchases, snapshot.model.spend
    assert card.parameters["bgnbd"] == {
        "r": purchases.r,
        "alpha": purchases.alpha,
        "a": purchases.a,
        "b": purchases.b,
    }
    assert card.parameters["gamma_gamma"] == {"p": spend.p, "q": spend.q, "v": spend.v}
    assert card.examples == card.parameters["customers_fitted"] == 300
    assert card.training.event_time_to == 365 * DAY
    assert all(f.importance is None for f in card.features)
    old = ClvSnapshot(snapshot.version, snapshot.model, snapshot.customers)
    assert clv_card(old).training.unknown == "the event time of the fit was not recorded"


def _view(t: int, customer: str, product: str) -> dict[str, Any]:
    return {
        "event_id": f"e-{customer}-{t}",
        "type": "product_viewed",
        "timestamp": t,
        "customer_id": customer,
        "channel": "web",
        "properties": {"product_id": product, "category": f"cat-{product[-1]}", "price": 9.0},
    }


def test_a_recommender_card_averages_the_shards_standardised_weights() -> None:
    rng = random.Random(1)
    shards = {0: Recommender(), 1: Recommender()}
    customers = [f"C-{i}" for i in range(12)]
    for step in range(400):
        customer = rng.choice(customers)
        product = f"P-{rng.randrange(8)}"
        shards[shard_of(customer, 2)].learn_one(
            customer, _view(1_000_000 + step * MINUTE, customer, product)
        )
    snapshots = {s: RecoSnapshot(3, r, 40 + s) for s, r in shards.items()}
    card = reco_card(snapshots, "cdp.reco-events")
    rankers = [r.ranker for r in shards.values()]
    assert all(isinstance(r, Ranker) for r in rankers)
    learned = sum(r.learned for r in rankers)
    assert learned > 0 and card.examples == learned
    for i, feature in enumerate(card.features):
        oracle = abs(sum(r.learned / learned * r.weights[i] for r in rankers))  # type: ignore[attr-defined]
        assert feature.name == RANKER_FEATURES[i]
        assert feature.importance == pytest.approx(oracle, rel=1e-12)
    assert card.version == 6
    assert card.training.offsets == {"0": 40, "1": 41}
    # the event time of the item events the shards learned: the first and the last view
    assert (card.training.event_time_from, card.training.event_time_to) == (
        1_000_000,
        1_000_000 + 399 * MINUTE,
    )
    assert card.training.unknown == ""
    assert card.parameters["shards"] == 2
    assert card.parameters["products_known"] == 8
    seen = {c for c in customers if any(s.state.has_shopper(c) for s in shards.values())}  # type: ignore[attr-defined]
    assert card.parameters["customers_known"] == len(seen)


def test_an_offer_card_counts_the_rewards_learned_per_offer() -> None:
    policy = OfferPolicy()
    rewards = {("cart", "a"): [1.0, 0.0, 1.0, 1.0], ("cart", "b"): [0.0, 0.0], ("win", "c"): [1.0]}
    for (rule, offer), outcomes in rewards.items():
        for reward in outcomes:
            policy.learn(rule, offer, {"bias": 1.0}, reward)
    card = offer_card(OfferSnapshot(4, policy, 17), "cdp.offer-rewards")
    assert card.parameters["rules"] == {
        "cart": {"a": {"rewards": 4, "reward_rate": 0.75}, "b": {"rewards": 2, "reward_rate": 0.0}},
        "win": {"c": {"rewards": 1, "reward_rate": 1.0}},
    }
    assert card.examples == 7
    assert card.quality["reward_rate"].value == pytest.approx(4 / 7)
    assert card.training.offsets == {"0": 17}


def _book() -> ForecastBook:
    """A book of 60 days: Saturdays twice the other days, for one category."""
    book = ForecastBook(version=3)
    for day in range(20454, 20454 + 60):
        book.learn_day(day, {"orders|d:shop": 20 if day % 7 == 2 else 10, "units|g:shoes": 5})
    return book


def test_a_forecast_card_gives_each_levels_mase_and_the_days_learned() -> None:
    book = _book()
    card = forecast_card(book)
    assert (card.name, card.version, card.examples) == ("forecast", 3, 60)
    wanted = {f"{q.level}_{q.target}_mase": q.mase for q in book.quality() if q.horizon == 0}
    assert {name: f.value for name, f in card.quality.items()} == wanted
    assert set(wanted) == {
        "shop_units_mase",
        "shop_revenue_mase",
        "category_units_mase",
        "category_revenue_mase",
    }
    assert card.parameters["series"] == {"shop": 1, "category": 1, "product": 0}
    assert card.training.event_time_from == 20454 * DAY
    assert card.training.event_time_to == (20454 + 60) * DAY - 1
    empty = forecast_card(ForecastBook())
    assert empty.quality["mase"].value is None and "28 days" in empty.quality["mase"].unknown


def test_the_api_answers_a_card_for_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    churn = _churn()
    clv = refit(_summaries(), 365 * DAY, None)
    reco = Recommender()
    reco.learn_one("C-1", _view(1_000_000, "C-1", "P-1"))
    policy = OfferPolicy()
    policy.learn("cart", "a", {"bias": 1.0}, 1.0)

    made: dict[str, Any] = {}

    def loaded(name: str, make: Any, snapshot: Any = None) -> Any:
        """The store ``make`` builds, kept as ``made[name]``, with ``snapshot`` loaded (as
        the api's refresh would have)."""

        def build(*args: Any) -> Any:
            store = made[name] = make(*args)
            store.current = snapshot
            return store

        return build

    monkeypatch.setattr(api, "churn_store", loaded("churn", api.churn_store, churn))
    campaign = CampaignLearner.fresh().snapshot()
    monkeypatch.setattr(api, "campaign_store", loaded("campaign", api.campaign_store, campaign))
    monkeypatch.setattr(api, "RedisClvStore", loaded("clv", api.RedisClvStore, clv))
    monkeypatch.setattr(api, "RecoShards", loaded("reco", api.RecoShards))
    monkeypatch.setattr(triggers, "offer_store", loaded("offers", triggers.offer_store))
    book = _book()
    monkeypatch.setattr(api, "forecast_store", loaded("forecast", api.forecast_store, book))
    personas = PersonaLearner.fresh().snapshot()
    monkeypatch.setattr(api, "persona_store", loaded("personas", api.persona_store, personas))
    settings = Settings(
        pseudonym_key=SecretStr("k"),
        api_tokens={"crm": ApiToken(secret=SecretStr(READ), scopes=["read"])},
        redis_url="redis://127.0.0.1:1/0",  # nothing listens: the offer reload fails, served
        kafka_bootstrap="127.0.0.1:1",
    )
    app = api.create_api(settings)
    app.web.init_server()
    made["reco"].shard(0).current = RecoSnapshot(2, reco, 5)

    names = [
        *("churn", "campaign", "clv", "reco", "offers", "forecast"),
        *("send_time", "next_purchase", "personas"),
    ]

    async def run() -> list[tuple[int, Any]]:
        out = []
        headers = {"Authorization": f"Bearer {READ}"}
        async with TestClient(TestServer(app.web.web_app)) as client:
            for path in ["/v1/models/offers", "/v1/models", "/v1/models/nope"]:
                response = await client.get(path, headers=headers)
                out.append((response.status, await response.json()))
            made["offers"].current = OfferSnapshot(1, policy, 0)  # no reload till then
            for name in names:
                response = await client.get(f"/v1/models/{name}", headers=headers)
                out.append((response.status, await response.json()))
        return out

    (none, listed, unknown, *cards) = asyncio.run(run())
    assert none[0] == 404 and "no published snapshot yet" in none[1]["error"]
    no_model = {"status": "unknown", "reasons": ["no model yet"]}
    no_report = {"status": "unknown", "reasons": ["input drift not known yet: no drift report yet"]}

    policy = HealthPolicy.from_settings(settings)

    def unassessed(why: str) -> dict[str, Any]:
        return {"status": "unknown", "reasons": [f"not assessed: {why}"]}

    assert listed == (
        200,
        {
            "models": [
                {
                    "name": "churn",
                    "version": 1,
                    "drift_status": "unknown",
                    "health": churn.health.to_json(),
                },
                {
                    "name": "campaign",
                    "version": 1,
                    "drift_status": "unknown",
                    "health": campaign_health(campaign, policy).to_json(),
                },
                {"name": "clv", "version": 1, "drift_status": "unknown", "health": no_report},
                # the timer merges the shards: not run
                {"name": "reco", "version": None, "drift_status": "unknown", "health": no_model},
                {"name": "offers", "version": None, "drift_status": "unknown", "health": no_model},
                {
                    "name": "forecast",
                    "version": 3,
                    "drift_status": "unknown",
                    "health": unassessed(
                        "no floor is set for the MASE against seasonal-naive, its live check"
                    ),
                },
                {
                    "name": "personas",
                    "version": 1,
                    "drift_status": "unknown",
                    "health": unassessed(
                        "no floor is set for the silhouette or the stability, its live checks"
                    ),
                },
                {
                    "name": "send_time",
                    "version": 1,
                    "drift_status": "unknown",
                    "health": unassessed(
                        "a rule over each customer's own activity, no population model"
                    ),
                },
                {
                    "name": "next_purchase",
                    "version": 1,
                    "drift_status": "unknown",
                    "health": unassessed(
                        "read from the lifetime-value fit: see GET /v1/models/clv"
                    ),
                },
            ]
        },
    )
    assert unknown[0] == 404
    assert unknown[1]["error"] == (
        "no model 'nope'; the models are churn, campaign, clv, reco, offers, forecast, "
        "send_time, next_purchase, personas (GET /v1/models)"
    )
    assert [status for status, _ in cards] == [200] * len(names)
    assert [card["name"] for _, card in cards] == names
    assert cards[5][1] == forecast_card(book).to_dict()
    assert cards[6][1] == send_time_card().to_dict()
    assert cards[7][1] == next_purchase_card(clv).to_dict()
    assert cards[8][1] == persona_card(personas, "cdp.persona-training").to_dict()
    assert cards[8][1]["quality"]["silhouette"]["unknown"].startswith("warming up")
    assert cards[0][1] == churn_card(churn, "cdp.training").to_dict()
    assert cards[1][1] == campaign_card(campaign, "cdp.campaign-training", policy).to_dict()
    assert cards[2][1] == clv_card(clv).to_dict()
    assert cards[3][1]["training"]["offsets"] == {"0": 5}
    assert cards[4][1]["parameters"]["rules"] == {"cart": {"a": {"rewards": 1, "reward_rate": 1.0}}}
    # Every card says its health; a model with a snapshot, as the list says it
    assert (
        [card["health"] for _, card in cards]
        == [
            listed[1]["models"][0]["health"],
            listed[1]["models"][1]["health"],
            no_report,
            no_report,  # the card merges the shards itself: it has a model
            unassessed(
                "offers' drift is not tracked (a reward carries no event time), nor is a quality "
                "floor set for their rewards"
            ),
            *({m["name"]: m["health"] for m in listed[1]["models"]}[n] for n in names[5:]),
        ]
    )
    # A fresh campaign model: its live quality is not defined yet
    assert listed[1]["models"][1]["health"]["status"] == "unknown"


def test_the_send_time_and_next_purchase_cards_give_their_rules_and_fit() -> None:
    from cdpulse.profile.send_hours import WEIGHTS

    card = send_time_card()
    assert {f.name: f.weight for f in card.features} == {k: float(v) for k, v in WEIGHTS.items()}
    assert card.quality["hit_rate"].value is None
    assert "cdpulse_send_time_opens_total" in card.quality["hit_rate"].unknown
    clv = refit(_summaries(), 365 * DAY, None)
    assert clv is not None
    fitted = next_purchase_card(clv)
    assert (fitted.version, fitted.examples) == (clv.version, clv.customers)
    assert fitted.parameters["r"] == clv.model.purchases.r
    assert fitted.parameters["alpha_days"] == clv.model.purchases.alpha
    assert "cdpulse_next_purchase_error_seconds_total" in fitted.quality["mae_days"].unknown


def test_the_campaign_card_ranks_the_feature_its_labels_follow_first() -> None:
    learner = CampaignLearner.fresh()
    rng = random.Random(3)
    pairs = []
    for i in range(2000):
        x = {name: rng.random() for name in CAMPAIGN_FEATURES}
        label = int(rng.random() < x["past_response_rate"])  # only this feature matters
        pairs.append((i, CampaignExample("C", i, 0, i, label, vector(x))))
    learner.learn(pairs)
    card = campaign_card(learner.snapshot(), "cdp.campaign-training")
    ranked = sorted(card.features, key=lambda f: -(f.importance or 0.0))
    assert ranked[0].name == "past_response_rate" and (ranked[0].weight or 0.0) > 0
    assert card.examples == 2000 and card.training.offsets == {"0": 1999}
    assert card.quality["roc_auc"].value is not None and card.quality["roc_auc"].value > 0.6
    assert card.drift_status == "unknown" and card.drift.alarms is not None
