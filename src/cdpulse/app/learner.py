"""``cdpulse learner``: the learners and the periodic refits, in a process of their own.

"One learner, many scorers": each partition of a model's topic (one partition, or one
per recommender shard) is learned by one consumer, in offset order, which publishes
versioned snapshots to Redis that every worker and API process scores with. Here:

* churn: labelled examples (``cdp.training``) → ``ChurnLearner`` → churn snapshot;
* campaign response: labelled exposures (``cdp.campaign-training``) →
  ``CampaignLearner`` → campaign snapshot;
* personas: customer-days with an order (``cdp.persona-training``) → ``PersonaLearner``
  → persona snapshot, and its live quality on /metrics;
* recommender: item events (``cdp.reco-events``) → ``Recommender`` → a snapshot per shard
  every ``CDPULSE_RECO_SNAPSHOT_SECONDS``, and the customers' recommendation lists to
  ``cdp.recommendations`` (throttled per customer in event time);
* offers: rewards (``cdp.offer-rewards``) → the bandits' policy;
* lifetime value: a refit of BG/NBD + Gamma-Gamma on every order summary, periodically,
  under a Redis lock (one learner at a time);
* demand forecasts: the days closed since the last, learned from the KPI counters
  (``app/forecast_learner.py``), under a lock too;
* RFM: the quantile sketches rebuilt from every summary (under a lock too), then a sweep
  of the customers whose RFM segment moved with the base though they sent nothing
  (win-back's lapsing customers), saved with the same compare-and-set as the workers'
  batches.

A learner that restarts resumes from its newest snapshot and skips the offsets it holds.
Churn and offer snapshots are published after every batch, before its offsets are
committed; a recommender shard's only every few seconds, so what a shard learned since
its last snapshot is lost with its learner (``models/reco_stream.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from faust.agents import current_agent

from cdpulse.app.base import (
    Heap,
    faust_app,
    partition_of,
    record_lag,
    redis_client,
    retrying,
)
from cdpulse.app.drift import LearnerDrift, register_drift
from cdpulse.app.fairness import LearnerFairness, register_fairness_job
from cdpulse.app.forecast_learner import register_forecast_learner
from cdpulse.app.health import Health, commit_readiness, fetch_readiness, register_health
from cdpulse.app.outlet import KafkaOutlet
from cdpulse.app.triggers import TriggerService
from cdpulse.app.worker import _committed_only_if_handled, output_topics
from cdpulse.contract.topics import Topics
from cdpulse.models.campaign.labels import CampaignExample
from cdpulse.models.campaign.model import CampaignLearner
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.clv.lifetime import refit
from cdpulse.models.health import HealthPolicy, ModelHealth
from cdpulse.models.personas_labels import PersonaExample
from cdpulse.models.personas_labels import read_record as read_persona_record
from cdpulse.models.personas_learner import PersonaLearner, PersonaState
from cdpulse.models.quality import FIGURES, ModelQuality
from cdpulse.models.reco import Recommender
from cdpulse.models.reco_stream import (
    Forget,
    ItemEvent,
    ListThrottle,
    RecoSnapshot,
    due_lists,
    learn_records,
)
from cdpulse.ops import metrics
from cdpulse.pipeline.outputs import Outputs, Stream
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Wanted
from cdpulse.privacy.seal import Seal
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import load_book
from cdpulse.segments.membership import enter, rfm_moves
from cdpulse.segments.sketches import RfmSketches
from cdpulse.settings import Settings
from cdpulse.store.drift import RedisDriftStore
from cdpulse.store.fairness import RedisFairnessStore
from cdpulse.store.keys import Keys, keys_for
from cdpulse.store.models import (
    RecoShards,
    RedisClvStore,
    campaign_store,
    churn_store,
    persona_store,
)
from cdpulse.store.redis import get_many
from cdpulse.store.segments import RedisMembershipStore
from cdpulse.store.state import RedisState
from cdpulse.triggers.decide import next_due
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.situations import Transition as Entry

log = logging.getLogger(__name__)

T = TypeVar("T")

SWEEP_PAGE = 500
LIST_SIZE = 10


def create_learner(settings: Settings) -> tuple[faust.App, Health]:
    """Build the learner's faust app: its three agents and its refit timers."""
    app = faust_app(settings, "learner")
    topics = Topics.from_settings(settings)
    client = redis_client(settings)
    prefix = settings.redis_prefix
    keys = keys_for(client, prefix)
    health = Health(settings.stall_seconds)
    heap = Heap(settings.gc_sweep_seconds)
    rules = Rules.from_settings(settings)
    pseudonyms = rules.traits.pseudonymizer
    outlet = KafkaOutlet(app, output_topics(topics))
    training = app.topic(topics.training, key_type=bytes, value_type=bytes, partitions=1)
    persona_training = app.topic(
        topics.persona_training, key_type=bytes, value_type=bytes, partitions=1
    )
    campaign_training = app.topic(
        topics.campaign_training, key_type=bytes, value_type=bytes, partitions=1
    )
    reco_events = app.topic(
        topics.reco_events, key_type=bytes, value_type=bytes, partitions=settings.reco_shards
    )
    triggers = TriggerService.create(settings, client, app)
    seal = Seal.from_settings(settings)
    model_store = churn_store(client, prefix, seal)
    campaigns = campaign_store(client, prefix, seal)
    personas = persona_store(client, prefix, seal)
    reco = RecoShards(client, prefix, seal)
    clv = RedisClvStore(client, prefix, seal)
    drift = LearnerDrift(settings, RedisDriftStore(client, prefix))
    register_drift(app, drift)
    register_forecast_learner(app, settings, client, seal)

    def retry(call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        agent = current_agent()
        stopping = (lambda: agent.should_stop) if agent is not None else lambda: app.should_stop
        return retrying(call, stopping, health.failed)

    def learned(events: Any) -> None:
        """A batch of a learner's topic is learned: settle the heap, report health and lag."""
        heap.settle()
        health.succeeded()
        positions = [(e.message.topic, e.message.partition, e.message.offset) for e in events]
        record_lag(app, metrics.LEARNER_LAG, positions)

    # --- churn ------------------------------------------------------------------------

    learner_box: list[ChurnLearner] = []
    health_policy = HealthPolicy.from_settings(settings)

    async def current_learner() -> ChurnLearner:
        """This process's learner, reloaded when another process published a newer one."""
        if not learner_box or await model_store.version() > learner_box[0].version:
            drift.forget("churn", 0)
            snapshot = await model_store.load()
            learner_box[:] = [
                ChurnLearner(snapshot, health_policy)
                if snapshot
                else ChurnLearner.fresh(settings.churn_model, health_policy)
            ]
        return learner_box[0]

    async def learn_examples(pairs: list[tuple[int, Example]]) -> None:
        model = await current_learner()
        result = model.learn(pairs)
        await drift.observe("churn", 0, result.scored)
        fairness.learned(pairs, result.scored)
        if result.learned:
            snapshot = model.snapshot()
            if await model_store.publish(snapshot):
                metrics.MODEL_VERSION.labels("churn").set(snapshot.version)
                _export_quality("churn", snapshot.quality)
                _export_health("churn", snapshot.health)
            else:
                learner_box.clear()  # someone published a newer one: reload

    @app.agent(training, concurrency=1, name="churn-learner")
    async def churn_learner(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.learner_batch_within
        ):
            with _committed_only_if_handled(events):
                await retry(functools.partial(learn_examples, _examples(events)))
                learned(events)

    # --- campaign response ------------------------------------------------------------

    campaign_box: list[CampaignLearner] = []
    _export_quality("campaign", ModelQuality())  # unknown (NaN) until labels come

    async def learn_exposures(pairs: list[tuple[int, CampaignExample]]) -> None:
        # This process's learner, reloaded when another process published a newer one.
        if not campaign_box or await campaigns.version() > campaign_box[0].version:
            snapshot = await campaigns.load()
            campaign_box[:] = [CampaignLearner(snapshot) if snapshot else CampaignLearner.fresh()]
        model = campaign_box[0]
        if not model.learn(pairs).learned:
            return
        snapshot = model.snapshot()
        if await campaigns.publish(snapshot):
            metrics.MODEL_VERSION.labels("campaign").set(snapshot.version)
            _export_quality("campaign", snapshot.quality)
        else:
            campaign_box.clear()  # someone published a newer one: reload

    @app.agent(campaign_training, concurrency=1, name="campaign-learner")
    async def campaign_learner(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.learner_batch_within
        ):
            with _committed_only_if_handled(events):
                pairs = _records(events, CampaignExample.from_json, "campaign exposure")
                await retry(functools.partial(learn_exposures, pairs))
                learned(events)

    # --- personas ---------------------------------------------------------------------

    persona_box: list[PersonaLearner] = []

    async def learn_points(pairs: list[tuple[int, PersonaExample | Forget]]) -> None:
        # This process's learner, reloaded when another process published a newer one.
        if not persona_box or await personas.version() > persona_box[0].version:
            state = await personas.load()
            persona_box[:] = [
                PersonaLearner(state)
                if state
                else PersonaLearner.fresh(
                    settings.persona_k,
                    settings.persona_warmup,
                    settings.persona_checkpoint_examples,
                )
            ]
        learner = persona_box[0]
        if not learner.learn(pairs):
            return
        state = learner.snapshot()
        if await personas.publish(state):
            metrics.MODEL_VERSION.labels("personas").set(state.version)
            metrics.MODEL_EXAMPLES.labels("personas").set(learner.model.n)
            _export_personas(state)
        else:
            persona_box.clear()  # someone published a newer one: reload

    @app.agent(persona_training, concurrency=1, name="persona-learner")
    async def persona_learner(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.learner_batch_within
        ):
            with _committed_only_if_handled(events):
                pairs = _records(events, read_persona_record, "persona record")
                await retry(functools.partial(learn_points, pairs))
                learned(events)

    # --- recommender ------------------------------------------------------------------

    # Each reco-events partition is a shard of the recommender (customers by pseudonym);
    # this process learns the shards Kafka assigned it, and serves lists from its own
    # shards' live state merged with the other shards' newest snapshots.
    live: dict[int, RecoSnapshot] = {}
    published_at: dict[int, float] = {}
    throttle = ListThrottle(int(settings.reco_list_interval_seconds * 1000))

    async def shard_state(shard: int) -> RecoSnapshot:
        """A shard's state: this process's, or the newest published if someone else's is
        newer (the shard moved here in a rebalance)."""
        state = live.get(shard)
        store = reco.shard(shard)
        if state is None or await store.version() > state.version:
            drift.forget("reco", shard)
            snapshot = await store.load()
            state = live[shard] = snapshot or RecoSnapshot(0, Recommender(), -1)
        return state

    async def learn_items(shard: int, records: list[tuple[int, bytes]]) -> None:
        state = await shard_state(shard)
        fresh = [(offset, raw) for offset, raw in records if offset > state.offset]
        if not fresh:
            return  # re-delivered: already in this shard's snapshot
        learned = learn_records(state.recommender, fresh)
        for offset in learned.malformed:
            log.error("unreadable reco-events record at %s/%s; skipped", shard, offset)
        metrics.RECO_EVENTS_LEARNED.inc(len(learned.items))
        offset = fresh[-1][0]
        state = live[shard] = RecoSnapshot(state.version, state.recommender, offset)
        await drift.observe("reco", shard, learned.scored)
        await publish_lists(learned.items)
        now = asyncio.get_running_loop().time()
        # An erasure is published at once: the stored snapshot must forget them too.
        if (
            learned.forgotten
            or now - published_at.get(shard, 0.0) >= settings.reco_snapshot_seconds
        ):
            snapshot = RecoSnapshot(state.version + 1, state.recommender, offset)
            if await reco.publish(shard, snapshot):
                live[shard] = snapshot
                published_at[shard] = now
                metrics.MODEL_VERSION.labels("reco").set(snapshot.version)
            else:
                live.pop(shard, None)  # someone published a newer one: reload

    view: list[tuple[float, tuple[tuple[int, int], ...], RecoSnapshot]] = []

    def served_view() -> RecoSnapshot:
        """Every shard as one, for lists: this process's shards live, the others' newest
        published. Rebuilt every ``model_refresh_seconds`` (and when the shards held
        change), not after every batch: a product's merged partners and popularity
        shares, which most lists read alike, are computed once per view; a customer's
        own session and purchases are read live from their shard all the same."""
        now = asyncio.get_running_loop().time()
        held = tuple(sorted((shard, id(s.recommender)) for shard, s in live.items()))
        if not view or view[0][1] != held or now - view[0][0] >= settings.model_refresh_seconds:
            merged = reco.merged(dict(live))
            assert merged is not None  # it holds the shard being learned at least
            view[:] = [(now, held, merged)]
        return view[0][2]

    async def publish_lists(learned: list[ItemEvent]) -> None:
        """The lists due after a batch, named by customer id: the learner knows pseudonyms
        only, and the index of pseudonyms (erased with the customer) says whose they are."""
        if not learned:
            return
        pseudonyms = list(dict.fromkeys(item.customer_id for item in learned))
        found = await get_many(client, [keys.profile_of(p) for p in pseudonyms])
        names = {
            p: (raw.decode() if isinstance(raw, bytes) else str(raw))
            for p, raw in zip(pseudonyms, found, strict=True)
            if raw is not None  # erased since, or not indexed yet
        }
        lists = due_lists(served_view(), learned, throttle, names.get, k=LIST_SIZE)
        if not lists:
            return
        outputs = Outputs()
        for due in lists:
            outputs.add(
                Stream.RECOMMENDATIONS,
                due.customer_id.encode(),
                due.document.model_dump_json().encode(),
            )
        await outlet.publish(outputs)
        metrics.RECOMMENDATIONS.inc(len(lists))
        taken = max(due.ingested for due in lists)
        if taken:
            metrics.INGEST_TO_RECOMMENDATION.observe(max(0.0, time.time() - taken))

    @app.agent(reco_events, concurrency=1, name="reco-learner")
    async def reco_learner(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.reco_batch_within
        ):
            with _committed_only_if_handled(events):
                by_shard: dict[int, list[tuple[int, bytes]]] = {}
                for e in events:
                    message = e.message
                    by_shard.setdefault(message.partition, []).append(
                        (message.offset, message.value)
                    )
                for shard, records in sorted(by_shard.items()):
                    await retry(functools.partial(learn_items, shard, records))
                learned(events)

    @app.timer(interval=settings.model_refresh_seconds)  # type: ignore[untyped-decorator]
    async def refresh_other_shards() -> None:
        """The other learners' shards, which this one's lists are served with too."""
        try:
            await reco.refresh()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("recommender shards refresh failed: %s", exc)

    # --- offers -----------------------------------------------------------------------

    @app.agent(triggers.rewards_topic, concurrency=1, name="offer-learner")
    async def offer_learner(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.learner_batch_within
        ):
            with _committed_only_if_handled(events):
                records = [(e.message.offset, e.message.value) for e in events]
                await retry(functools.partial(triggers.learn, records))
                learned(events)

    # --- lifetime value and RFM -------------------------------------------------------

    @app.timer(interval=settings.clv_refit_seconds)  # type: ignore[untyped-decorator]
    async def refit_clv() -> None:
        """One learner per interval refits lifetime value on every customer's summary."""
        try:
            if not await clv.lock(max(1, int(settings.clv_refit_seconds))):
                return
            # The newest published parameters, whoever published them: the new snapshot's
            # version follows theirs (a restarted learner's would be refused as old).
            await clv.refresh()
            summaries = await clv.summaries()
            as_of = await _watermark(client, keys)
            # Fitting takes a second for 100k customers: off the event loop.
            snapshot = await asyncio.to_thread(refit, summaries, as_of, clv.get())
            if snapshot is not None and await clv.publish(snapshot):
                metrics.MODEL_VERSION.labels("clv").set(snapshot.version)
                metrics.CLV_CUSTOMERS.set(snapshot.customers)
            await drift.refitted(summaries, as_of, clv.get())
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("lifetime-value refit failed: %s", exc)

    book = load_book(settings.segments_file)
    memberships = RedisMembershipStore(client, prefix)
    partitions = settings.topic_partitions
    state = RedisState(
        client,
        prefix,
        retention_ms=int(settings.profile_retention_days * 86_400_000),
        pseudonym=pseudonyms.of_id,
        shard_of=lambda profile_id: partition_of(profile_id, partitions),
    )
    hooks = TriggerEngine(triggers.config, session_gap=rules.session_gap)
    fairness = LearnerFairness(
        settings,
        RedisFairnessStore(client, prefix),
        state,
        [rule.name for rule in triggers.config.rules],
    )
    register_fairness_job(app, fairness, clv)
    sweep = RfmSweep(book.rfm, memberships, state, hooks, outlet)

    @app.timer(interval=settings.rfm_refresh_seconds)  # type: ignore[untyped-decorator]
    async def rebuild_rfm() -> None:
        """Rebuild the RFM sketches from every summary, then sweep every customer."""
        if not book.rfm:
            return
        try:
            if not await memberships.lock(max(1, int(settings.rfm_refresh_seconds))):
                return
            summaries = await clv.summaries()
            rows = [(s.last_order_at, s.orders, s.net_revenue) for s in summaries]
            sketches = await asyncio.to_thread(RfmSketches.build, rows)
            if sketches.customers and await memberships.publish_sketches(sketches):
                metrics.RFM_CUSTOMERS.set(sketches.customers)
                await sweep.run(sketches, await _watermark(client, keys))
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("RFM rebuild failed: %s", exc)

    @app.task  # type: ignore[untyped-decorator]
    async def load_scripts() -> None:
        await retrying(state.load_scripts, lambda: app.should_stop, health.failed)
        heap.sweep()

    readiness = {
        "offsets_committed": commit_readiness(app, settings),
        "fetching": fetch_readiness(app, settings),
    }
    register_health(app, settings, health, client, readiness=readiness)
    return app, health


class RfmSweep:
    """RFM segment changes of customers who sent nothing: the base moved around them.

    Each page of order summaries is scored with the new sketches; the customers whose
    RFM segment changed are loaded and their profiles saved by compare-and-set
    (generations, win-back entering their trigger watch, and the transitions in the
    profile's outbox); the transitions of the saves that went through are published
    then, and their outboxes emptied by a second compare-and-set. A customer a worker
    wrote meanwhile is left to that worker (its next evaluation sees the same sketches)
    or to the next sweep: what a refused save decided is never published, so the topic
    never holds a move the profile does not. A sweep that dies between its write and
    its publish leaves the transitions in the outbox, which the next save of the
    profile publishes (``pipeline.stages``).
    """

    def __init__(
        self,
        enabled: bool,
        memberships: RedisMembershipStore,
        state: RedisState,
        hooks: TriggerEngine,
        outlet: KafkaOutlet,
    ) -> None:
        self.enabled = enabled
        self.memberships = memberships
        self.state = state
        self.hooks = hooks
        self.outlet = outlet

    async def run(self, sketches: RfmSketches, at_ms: int) -> int:
        """Sweep every summary; how many customers changed segment."""
        if not self.enabled:
            return 0
        cursor, moved = 0, 0
        while True:
            cursor, page = await self.memberships.summary_page(cursor, SWEEP_PAGE)
            view = await self.state.read(Wanted(ids=set(page), watermarks=False))
            changes = Changes()
            for customer_id in page:
                stored = view.profiles.get(customer_id)
                if stored is None or stored.profile is None or customer_id in view.aliases:
                    continue
                profile = stored.profile
                found = rfm_moves(profile, sketches.score_profile(profile), at_ms)
                if not found:
                    continue
                enter(profile, found)
                profile.outbox = [*profile.outbox, *(t.to_json() for t in found)]
                entries = []
                for t in found:
                    if t.entered:
                        entries.append(Entry(customer_id, t.segment, True, t.at_ms))
                trigger_due: int | None = None
                if entries and self.hooks.config.rules:
                    self.hooks.after_profile(profile, entries)
                    if profile.watch is not None:
                        trigger_due = next_due(profile.watch, self.hooks.config)
                changes.saves.append(
                    Save(
                        profile,
                        stored.version,
                        entered=[t.segment for t in found if t.entered],
                        left=[t.segment for t in found if not t.entered],
                        trigger_due=trigger_due,
                        # The churn schedule is the worker's; win-back entries move the
                        # trigger one.
                        schedules=("trigger",) if entries else (),
                    )
                )
            if changes.saves:
                statuses = await self.state.write(changes)
                outputs = Outputs()
                published = []
                for save in changes.saves:
                    if statuses.get(save.profile.id) is SaveStatus.SAVED:
                        moved += 1
                        published.append(save)
                        for value in save.profile.outbox:
                            outputs.add(Stream.SEGMENTS, save.profile.id.encode(), value)
                await self.outlet.publish(outputs)
                await self._clear(published)
            if cursor == 0:
                return moved

    async def _clear(self, published: list[Save]) -> None:
        """Empty the outboxes just published: a customer no worker saves again would
        otherwise carry every sweep's transitions in their profile. A save refused here
        lost to a worker's, which published and emptied the outbox itself."""
        clearing = Changes()
        for save in published:
            save.profile.outbox = []
            clearing.saves.append(Save(save.profile, save.version + 1, schedules=()))
        if clearing.saves:
            await self.state.write(clearing)


def _export_quality(model: str, quality: ModelQuality) -> None:
    """The model's quality on /metrics: a figure still unknown reads NaN, defined 0."""
    metrics.MODEL_EXAMPLES.labels(model).set(quality.examples)
    metrics.MODEL_ROC_AUC.labels(model).set(quality.auc)
    metrics.MODEL_LOG_LOSS.labels(model).set(quality.log_loss)
    metrics.MODEL_DRIFT_ALARMS.labels(model).set(quality.drifts)
    for figure in FIGURES:
        defined = not quality.unknown(figure)
        metrics.MODEL_QUALITY_DEFINED.labels(model, figure).set(1 if defined else 0)


def _export_personas(state: PersonaState) -> None:
    """The personas' sizes and live quality on /metrics (stability NaN while unknown)."""
    view, measured = state.view, state.quality
    if view is None or measured is None:
        return
    for persona in view.personas:
        metrics.PERSONA_SIZE.labels(str(persona.id)).set(persona.size)
        metrics.PERSONA_SHARE.labels(str(persona.id)).set(measured.shares[persona.id])
    metrics.PERSONA_SILHOUETTE.set(measured.silhouette)
    stability = measured.stability
    metrics.PERSONA_STABILITY.set(math.nan if stability is None else stability)


def _export_health(model: str, health: ModelHealth) -> None:
    """The snapshot's health on /metrics: 0 ok, 1 degraded, NaN while unknown."""
    value = {"ok": 0.0, "degraded": 1.0}.get(health.status, math.nan)
    metrics.MODEL_HEALTH.labels(model).set(value)
    defined = 0 if math.isnan(value) else 1
    metrics.MODEL_QUALITY_DEFINED.labels(model, "health").set(defined)


def _examples(events: Any) -> list[tuple[int, Example]]:
    return _records(events, Example.from_json, "training example")


def _records(events: Any, read: Callable[[bytes], T], what: str) -> list[tuple[int, T]]:
    """(offset, record) pairs; a training topic is ours, but a bad record is skipped."""
    pairs = []
    for event in events:
        try:
            pairs.append((event.message.offset, read(event.message.value)))
        except (ValueError, TypeError, KeyError):
            log.error("unreadable %s at offset %s; skipped", what, event.message.offset)
    return pairs


async def _watermark(client: Any, keys: Keys) -> int:
    values = await client.hvals(keys.watermark)
    return max((int(v) for v in values), default=0)
