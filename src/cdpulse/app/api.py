"""``cdpulse api``: the HTTP API in a process of its own (as many as the reads need).

It reads Redis and the published model snapshots, never a worker's memory, so a read
never waits behind a batch and a worker never waits behind a read. Profiles with their
scores, recommendations, the collector (which produces to the input topics), segments,
experiments, trigger rules, live KPIs and their dashboard, demand forecasts, identity
lookup, export and erasure requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust

from cdpulse.app.audit import register_read_audit
from cdpulse.app.auth import Guard, RateLimit
from cdpulse.app.base import Heap, faust_app, redis_client
from cdpulse.app.dashboard_data import register_dashboard_data
from cdpulse.app.dashboard_views import register_dashboard_views
from cdpulse.app.drift import TRACKED
from cdpulse.app.experiments import register_experiment_views
from cdpulse.app.fairness import register_fairness_view
from cdpulse.app.forecast_views import register_forecast_views
from cdpulse.app.health import register_health
from cdpulse.app.kpi_views import register_kpi_views
from cdpulse.app.model_views import register_model_views
from cdpulse.app.persona_views import register_persona_views
from cdpulse.app.segment_views import register_segment_views
from cdpulse.app.served_drift import ServedDrift
from cdpulse.app.tracking_views import register_tracking_views
from cdpulse.app.trigger_views import register_trigger_views
from cdpulse.app.triggers import TriggerService
from cdpulse.app.views import register_views
from cdpulse.contract.topics import Topics
from cdpulse.experiments.definitions import experiments
from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.health import HealthPolicy
from cdpulse.models.personas_learner import PersonaState
from cdpulse.ops import metrics
from cdpulse.privacy.pseudonyms import RememberedPseudonyms
from cdpulse.privacy.seal import Seal
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import load_book
from cdpulse.settings import Settings
from cdpulse.store.data_keys import DataKeys
from cdpulse.store.drift import RedisDriftStore
from cdpulse.store.fairness import RedisFairnessStore
from cdpulse.store.identities import IdentityIndex
from cdpulse.store.kpis import RedisKpis
from cdpulse.store.models import (
    RecoShards,
    RedisClvStore,
    SnapshotStore,
    campaign_store,
    churn_store,
    forecast_store,
    persona_store,
)
from cdpulse.store.redis import RedisProfileStore
from cdpulse.store.segments import RedisMembershipStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the views share."""

    settings: Settings
    topics: Topics
    rules: Rules
    store: RedisProfileStore
    registry: SnapshotStore[Snapshot]
    clv: RedisClvStore
    reco: RecoShards
    app: faust.App
    dead_letter: Any  # faust.TopicT
    outputs: dict[str, Any]  # input topic name -> faust.TopicT, for the collector
    data_keys: DataKeys
    identities: IdentityIndex
    guard: Guard  # every view's handlers: @guard(scope)
    # Events per token per second, one bucket for every route that ingests (collector.py).
    ingest_limit: RateLimit
    campaign: SnapshotStore[CampaignSnapshot]
    # The models' drift reports and the health judged from them, loaded with the snapshots.
    drift: ServedDrift
    personas: SnapshotStore[PersonaState]
    # The pseudonym of an id, as the read audit and the recommender name customers.
    pseudonyms: RememberedPseudonyms


def create_api(settings: Settings) -> faust.App:
    """Build the API's faust app: its views and the timers that refresh what they read."""
    app = faust_app(settings, "api")
    # A full collection traverses every live container, the served models' millions
    # among them: what survives start-up and each model refresh is frozen instead.
    heap = Heap(settings.gc_sweep_seconds)
    topics = Topics.from_settings(settings)
    client = redis_client(settings)
    prefix = settings.redis_prefix
    retention_ms = int(settings.profile_retention_days * 86_400_000)
    store = RedisProfileStore(client, prefix, retention_ms, settings.remembered_links)
    rules = Rules.from_settings(settings)
    seal = Seal.from_settings(settings)
    registry = churn_store(client, prefix, seal)
    clv = RedisClvStore(client, prefix, seal)
    reco = RecoShards(client, prefix, seal)
    services = Services(
        settings,
        topics,
        rules,
        store,
        registry,
        clv,
        reco,
        app,
        app.topic(topics.dead_letter, key_type=bytes, value_type=bytes),
        {name: app.topic(name, key_type=bytes, value_type=bytes) for name in topics.inputs},
        DataKeys(client, prefix, int(settings.profile_retention_days * 86400)),
        IdentityIndex(client, prefix),
        Guard.from_settings(settings),
        RateLimit(settings.ingest_rate, settings.ingest_burst),
        campaign_store(client, prefix, seal),
        ServedDrift(
            RedisDriftStore(client, prefix), list(TRACKED), HealthPolicy.from_settings(settings)
        ),
        persona_store(client, prefix, seal),
        RememberedPseudonyms(rules.traits.pseudonymizer, settings.remembered_pseudonyms),
    )
    book = load_book(settings.segments_file)
    memberships = RedisMembershipStore(client, prefix)
    declared = experiments(book, settings.segments_file or "<segments>")
    triggers = TriggerService.create(settings, client, app)
    guard = services.guard
    forecasts = forecast_store(client, prefix, seal)
    register_views(services)
    register_tracking_views(services)
    register_model_views(services, triggers.policies, forecasts)
    register_segment_views(app, book, memberships, guard)
    register_experiment_views(app, settings, client, store, declared, guard)
    register_trigger_views(app, triggers, store, guard)
    register_kpi_views(app, RedisKpis(client, prefix), store, guard)
    register_dashboard_views(app, guard)
    register_dashboard_data(app, settings, client, topics, list(book.names), guard)
    register_fairness_view(app, RedisFairnessStore(client, prefix), guard)
    register_forecast_views(app, forecasts, guard)
    register_persona_views(app, services.personas, guard)
    trail = register_read_audit(app, settings, guard, topics.read_audit, services.pseudonyms)
    register_health(app, settings, None, client, guard, {"read_audit": trail.readiness})

    @app.timer(interval=settings.model_refresh_seconds)  # type: ignore[untyped-decorator]
    async def refresh_models() -> None:
        """Newer snapshots: reads score with them from now on."""
        try:
            await registry.refresh()
            await services.campaign.refresh()
            await services.personas.refresh()
            await clv.refresh()
            await reco.refresh()
            await services.drift.refresh()
            await forecasts.refresh()
            await memberships.refresh_sketches()
        except Exception as exc:  # keep serving the snapshots already loaded
            metrics.REDIS_ERRORS.inc()
            log.warning("model refresh failed: %s", exc)
        heap.settle()

    @app.task  # type: ignore[untyped-decorator]
    async def settle_start_up() -> None:
        heap.sweep()

    @app.timer(interval=min(5.0, settings.rfm_refresh_seconds))  # type: ignore[untyped-decorator]
    async def segment_sizes() -> None:
        try:
            for name, size in (await memberships.sizes(list(book.names))).items():
                metrics.SEGMENT_SIZE.labels(name).set(size)
        except Exception:  # telemetry only
            metrics.REDIS_ERRORS.inc()

    return app
