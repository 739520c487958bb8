"""HTTP views of the published models: ``/v1/models`` and each model's card.

The cards are built from what the api already loads on its refresh timer (churn,
lifetime value, the recommender's shards, and the learner's drift reports with the
health judged from them: ``app/served_drift.py``). The offer policy is the trigger
service's store, which the api does not refresh: it is reloaded here when a card asks,
at most once per ``CDPULSE_MODEL_REFRESH_SECONDS`` (one ``HGET`` when it is unchanged).

Every card and every entry of the list has the model's ``health``: churn's is its
snapshot's, lifetime value's and the recommender's their inputs' drift, and the other
models' unknown with the reason (``models/cards.py`` ``UNASSESSED``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from cdpulse.app.drift import TRACKED
from cdpulse.models.cards import (
    SEND_TIME_VERSION,
    ModelCard,
    campaign_card,
    campaign_health,
    churn_card,
    clv_card,
    forecast_card,
    next_purchase_card,
    persona_card,
    reco_card,
    send_time_card,
    unassessed,
)
from cdpulse.models.churn.scoring import health_of
from cdpulse.models.clv.lifetime import MIN_CUSTOMERS
from cdpulse.models.health import NO_MODEL, ModelHealth
from cdpulse.offers.card import offer_card
from cdpulse.ops import metrics

if TYPE_CHECKING:
    from cdpulse.app.api import Services
    from cdpulse.models.forecast import ForecastBook
    from cdpulse.offers.bandit import OfferSnapshot
    from cdpulse.store.models import SnapshotStore

log = logging.getLogger(__name__)

MODELS = (
    "churn",
    "campaign",
    "clv",
    "reco",
    "offers",
    "forecast",
    "send_time",
    "next_purchase",
    "personas",
)


def register_model_views(
    services: Services,
    policies: SnapshotStore[OfferSnapshot],
    forecasts: SnapshotStore[ForecastBook],
) -> None:
    """Add ``/v1/models`` and ``/v1/models/{name}`` to the app (scope ``read``)."""
    guarded = services.guard
    topics = services.topics
    offers_read = [0.0]  # monotonic time of the last reload of the offer policy
    served = services.drift
    policy = served.policy

    async def offers() -> OfferSnapshot | None:
        now = time.monotonic()
        if now - offers_read[0] >= services.settings.model_refresh_seconds:
            offers_read[0] = now
            try:
                await policies.refresh()
            except Exception as exc:  # serve the policy already loaded, if any
                metrics.REDIS_ERRORS.inc()
                log.warning("offer policy refresh failed: %s", exc)
        return policies.get()

    def health(name: str, published: bool) -> ModelHealth:
        """What the card of ``name`` says of its health (``published``: it has a snapshot)."""
        if not published:
            return NO_MODEL
        if name == "churn":
            return health_of(services.registry.get())
        if name == "campaign":
            campaign = services.campaign.get()
            return NO_MODEL if campaign is None else campaign_health(campaign, policy)
        return served.health(name) if name in TRACKED else unassessed(name)

    async def card_of(name: str) -> ModelCard | None:
        """The card of model ``name`` (one of ``MODELS``), None before its first snapshot."""
        if name == "churn":
            churn = services.registry.get()
            return (
                None if churn is None else churn_card(churn, topics.training, served.report(name))
            )
        if name == "campaign":
            campaign = services.campaign.get()
            if campaign is None:
                return None
            return campaign_card(campaign, topics.campaign_training, policy)
        if name == "clv":
            clv = services.clv.get()
            return None if clv is None else clv_card(clv, served.report(name), policy)
        if name == "reco":
            shards = services.reco.newest()
            report = served.report(name)
            return reco_card(shards, topics.reco_events, report, policy) if shards else None
        if name == "forecast":
            book = forecasts.get()
            return None if book is None else forecast_card(book)
        if name == "send_time":
            return send_time_card()  # its rules: nothing to publish
        if name == "next_purchase":
            clv = services.clv.get()
            return None if clv is None else next_purchase_card(clv)
        if name == "personas":
            state = services.personas.get()
            return None if state is None else persona_card(state, topics.persona_training)
        offer = await offers()
        return None if offer is None else offer_card(offer, services.settings.topic_offer_rewards)

    @services.app.page("/v1/models")
    class ModelsView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            versions = {
                "churn": services.registry.get(),
                "campaign": services.campaign.get(),
                "clv": services.clv.get(),
                "reco": services.reco.get(),
                "offers": await offers(),
                "forecast": forecasts.get(),
                "personas": services.personas.get(),
                "next_purchase": services.clv.get(),  # it reads the lifetime-value fit
            }
            listed: list[dict[str, Any]] = []
            for name, s in versions.items():
                report = served.report(name) if name in TRACKED else None
                status = "unknown" if report is None else report.status
                version = None if s is None else s.version
                entry = {"name": name, "version": version, "drift_status": status}
                listed.append({**entry, "health": health(name, s is not None).to_json()})
            # send time publishes nothing: its version is its rules' (before next_purchase)
            send_time: dict[str, Any] = {
                "name": "send_time",
                "version": SEND_TIME_VERSION,
                "drift_status": "unknown",
                "health": unassessed("send_time").to_json(),
            }
            listed.insert(len(listed) - 1, send_time)
            return self.json({"models": listed})

    @services.app.page("/v1/models/{name}")
    class ModelCardView(View):
        @guarded("read")
        async def get(self, request: Request, name: str) -> Response:
            if name not in MODELS:
                names = ", ".join(MODELS)
                return self.json(
                    {"error": f"no model {name!r}; the models are {names} (GET /v1/models)"},
                    status=404,
                )
            card = await card_of(name)
            if card is None:
                return self.json(
                    {
                        "error": f"model {name!r} has no published snapshot yet: its learner "
                        "publishes one after its first batch (lifetime value: after its first "
                        f"refit of at least {MIN_CUSTOMERS} customers)"
                    },
                    status=404,
                )
            return self.json(card.to_dict())
