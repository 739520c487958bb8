"""The Faust app: the profile agent and its web views. Wiring only, no business rules.

The agent takes batches of raw messages (``take_events``), hands them to the
``BatchProcessor`` and publishes its dead letters. Faust acks a batch's messages only
after the loop body returns, so offsets are committed only after Redis acknowledged
the writes; when Redis is down the body backs off and retries instead of returning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import faust
from faust.agents import current_agent
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cdpulse.app.experiments import attach_experiments
from cdpulse.app.segment_views import register_segment_views
from cdpulse.app.segments import attach_segments
from cdpulse.app.triggers import TriggerService
from cdpulse.connections import faust_credentials, redis_options
from cdpulse.contract.topics import Topics
from cdpulse.ingest.batch import BatchProcessor, BatchResult
from cdpulse.ingest.message import Message
from cdpulse.models.churn import Snapshot
from cdpulse.models.labels import ChurnLabeler, Example
from cdpulse.models.learner import ChurnLearner
from cdpulse.models.lifetime import OrderSummary, refit
from cdpulse.models.online import ChurnScoring
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco_stream import ItemEvent, ListThrottle, RecoSnapshot, recommendation_list
from cdpulse.ops import metrics
from cdpulse.privacy.consent import allows
from cdpulse.privacy.data_keys import DataKeys
from cdpulse.privacy.erasure import Eraser, Erasure
from cdpulse.privacy.identities import IdentityIndex
from cdpulse.privacy.ledger import RedisLedger
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.rules import Rules
from cdpulse.segments.tracker import Batch as SegmentBatch
from cdpulse.settings import Settings
from cdpulse.store.keys import Keys
from cdpulse.store.models import RedisClvStore, SnapshotStore, churn_store, reco_store
from cdpulse.store.redis import RedisProfileStore
from cdpulse.triggers.situations import Transition as SituationTransition

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


@dataclass
class Services:
    """What the agent and the views share."""

    settings: Settings
    topics: Topics
    rules: Rules
    store: RedisProfileStore
    processor: BatchProcessor
    registry: SnapshotStore[Snapshot]
    clv: RedisClvStore
    reco: SnapshotStore[RecoSnapshot]
    app: faust.App
    dead_letter: Any  # faust.TopicT
    outputs: dict[str, Any]  # input topic name -> faust.TopicT, for the collector
    eraser: Eraser
    data_keys: DataKeys
    identities: IdentityIndex
    triggers: TriggerService | None = None


async def retrying(
    call: Callable[[], Awaitable[T]], stopping: Callable[[], bool] = lambda: False
) -> T:
    """Run ``call``, backing off while it fails (Redis down, say), until ``stopping()``.

    It never gives up on its own: a batch that cannot be written stays unacked. Once its
    agent is stopping it raises ``CancelledError`` instead of waiting for Redis, so SIGTERM
    is obeyed; the unacked batch is then redelivered to whoever owns the partition next.
    """
    delay = BACKOFF_FIRST
    while True:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("redis unavailable (%s); retrying the batch in %.1fs", exc, delay)
        except Exception:
            # Input never raises (it is dead-lettered), so this is a bug. Retrying keeps
            # the batch unacked: the partition stalls visibly (lag, logs) but loses nothing.
            metrics.BATCH_FAILURES.inc()
            log.exception("batch step failed; retrying in %.1fs", delay)
        # Checked only after a failure: a healthy batch still finishes during shutdown.
        if stopping():
            log.warning("stopping: the batch stays unacked and will be redelivered")
            raise asyncio.CancelledError("stopping with the batch unacked")
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


def create_app(settings: Settings) -> tuple[faust.App, Services]:
    """Build the Faust app, its agent and its views from ``settings``."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=f"{settings.data_dir}/{settings.app_id}",
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        broker_commit_interval=settings.commit_interval,
        consumer_auto_offset_reset=settings.offset_reset,
        producer_acks=-1,
        broker_credentials=faust_credentials(settings),
        # Shutdown and rebalance commit what is acked instead of waiting for every message
        # handed to a stream: a batch stuck retrying (Redis down) would hold them forever.
        # Safe because writes are idempotent: an unacked batch is redelivered and re-applied
        # as duplicates, which the per-key offsets refuse.
        stream_wait_empty=False,
    )
    topics = Topics.from_settings(settings)
    source = app.topic(*topics.inputs, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, key_type=bytes, value_type=bytes)
    outputs = {name: app.topic(name, key_type=bytes, value_type=bytes) for name in topics.inputs}
    training = app.topic(topics.training, key_type=bytes, value_type=bytes, partitions=1)
    store = RedisProfileStore.from_url(
        settings.redis_url,
        settings.redis_prefix,
        int(settings.profile_retention_days * 86_400_000),
        **redis_options(settings),
    )
    registry = churn_store(store.client, settings.redis_prefix)
    model_store = registry
    clv = RedisClvStore(store.client, settings.redis_prefix)
    reco = reco_store(store.client, settings.redis_prefix)
    reco_events = app.topic(topics.reco_events, key_type=bytes, value_type=bytes, partitions=1)
    recommendations = app.topic(topics.recommendations, key_type=bytes, value_type=bytes)
    # Every topic keyed by customer id that keeps the newest record per key: an erasure
    # tombstones each (``Topics.compacted``; a new one listed there is covered).
    compacted = [app.topic(name, key_type=bytes, value_type=bytes) for name in topics.compacted]
    rules = Rules.from_settings(settings)
    segments = attach_segments(app, settings, store.client, rules, clv, store.watermark)
    experiments = attach_experiments(app, settings, store.client, store, segments)
    pseudonyms = rules.traits.pseudonymizer
    labeler = ChurnLabeler.from_settings(settings)
    ledger = RedisLedger(store.client, Keys(settings.redis_prefix).erasure_ledger, pseudonyms)
    eraser = Eraser(
        store.client,
        settings.redis_prefix,
        ledger,
        pseudonyms,
        settings.erasure_sweep,
        rules.traits.personal,
    )
    identities = IdentityIndex(store.client, settings.redis_prefix, store.retention_ms)
    audit = app.topic(topics.audit, key_type=bytes, value_type=bytes)
    triggers = TriggerService.create(settings, store.client, rules.session_gap, app, pseudonyms)
    processor = BatchProcessor(
        store,
        rules,
        max_bytes=settings.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        enricher=ChurnScoring(labeler, registry.get),
        partitions=len(topics.inputs) * settings.topic_partitions,
        item_events=True,
        erasures=eraser,
        triggers=triggers.engine,
    )
    services = Services(
        settings,
        topics,
        rules,
        store,
        processor,
        registry,
        clv,
        reco,
        app,
        dead_letter,
        outputs,
        eraser,
        DataKeys(store.client, settings.redis_prefix, int(settings.profile_retention_days * 86400)),
        identities,
        triggers,
    )

    throttle = ListThrottle(int(settings.reco_list_interval_seconds * 1000))

    def retry(call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        # The agent's own stop, not the app's: an agent raising before it is being stopped
        # counts as crashed, and its supervisor restarts it, which stalls the shutdown.
        agent = current_agent()
        return retrying(call, lambda: agent.should_stop if agent is not None else app.should_stop)

    async def publish(
        result: BatchResult, examples: list[Example], segment_batch: SegmentBatch
    ) -> None:
        """Everything a batch sends, taken by the broker before its offsets are acked.

        Retried whole when a send fails: outputs are at least once, and a consumer
        dedupes on the event, example or cause id each record carries.
        """
        lists = _recommendation_lists(reco.get(), result, throttle, pseudonyms)
        deliveries = (
            [
                await dead_letter.send(key=dl.key.encode() if dl.key else None, value=dl.to_json())
                for dl in result.dead_letters
            ]
            + [
                await training.send(key=ex.profile_id.encode(), value=ex.to_json())
                for ex in _pseudonymous(examples, pseudonyms)
            ]
            + [
                await reco_events.send(key=item.customer_id.encode(), value=item.to_json())
                for item in result.item_events
            ]
            + [
                await recommendations.send(key=customer.encode(), value=document)
                for customer, document, _ in lists
            ]
            + await segments.send(segment_batch)
            + [
                await topic.send(key=key, value=value)
                for erasure in result.erasures
                for topic, key, value in _erasure_records(
                    erasure, compacted, reco_events, audit, pseudonyms
                )
            ]
        )
        for delivery in deliveries:
            await delivery
        taken = time.time()
        for _, _, ingested in lists:
            if ingested:
                metrics.INGEST_TO_RECOMMENDATION.observe(max(0.0, taken - ingested))

    @app.agent(source, concurrency=1, name="profiles")
    async def profiles(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            with _committed_only_if_handled(events):
                await handle([_message(e) for e in events])

    async def handle(messages: list[Message]) -> None:
        result = await retry(partial(processor.process, messages))
        low = await retry(processor.low_watermark)
        expired = await retry(partial(processor.expire, low))
        publish_triggers = partial(triggers.publish, snapshot=reco.get())
        triggered = await retry(
            partial(triggers.engine.expire, store, low, publish=publish_triggers)
        )
        # Sorted by decision time: with one worker the training topic then holds the
        # examples in exactly the order a replay of the same events produces.
        examples = sorted(result.examples + expired, key=lambda e: e.order)
        segment_batch = await retry(partial(segments.evaluate, result.saved))
        await retry(partial(publish, result, examples, segment_batch))
        # Win-back: entering a segment is a situation in the customer's trigger watch.
        # Before the commit: a crash in between re-sends the transitions, and entering
        # the same one twice adds nothing.
        entering = [
            SituationTransition(t.customer_id, t.segment, t.entered, t.at_ms)
            for t in segment_batch.transitions
        ]
        await retry(partial(triggers.engine.enter, store, entering))
        # Only now, the broker has them: a crash before this line leaves them pending.
        await retry(partial(segments.commit, segment_batch))
        await retry(partial(experiments.observe, result.saved))
        for example in examples:
            metrics.CHURN_LABELS.labels(str(example.label)).inc()
        summaries = {p.id: s for p in result.saved if (s := OrderSummary.of(p)) is not None}
        await retry(partial(clv.put_summaries, summaries))
        await retry(partial(identities.index, result.saved, rules.traits.personal))
        await retry(partial(triggers.record, triggered))
        _record_lag(app, messages)

    reco_box: list[RecoSnapshot] = []
    reco_published = [0.0]

    async def current_recommender() -> RecoSnapshot:
        """This process's recommender learner, reloaded when a newer one was published."""
        if not reco_box or await reco.version() > reco_box[0].version:
            snapshot = await reco.load()
            reco_box[:] = [snapshot or RecoSnapshot(0, Recommender(), -1)]
        return reco_box[0]

    @app.agent(reco_events, concurrency=1, name="reco-learner")
    async def reco_learner(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=1.0):
            with _committed_only_if_handled(events):
                await learn_items(events)

    async def learn_items(events: Any) -> None:
        state = await retry(current_recommender)
        offset = state.offset
        forgot = False
        for event in events:
            if event.message.offset <= offset:
                continue  # re-delivered: already in this snapshot
            try:
                forget = _forget_record(event.message.value)
                if forget is not None:
                    state.recommender.forget(forget)
                    forgot = True
                else:
                    item = ItemEvent.from_json(event.message.value)
                    state.recommender.learn_one(item.customer_id, item.event, item.context)
                    metrics.RECO_EVENTS_LEARNED.inc()
            except (ValueError, TypeError, KeyError):
                log.error("unreadable reco event at offset %s; skipped", event.message.offset)
            offset = event.message.offset
        reco_box[:] = [RecoSnapshot(state.version, state.recommender, offset)]
        now = asyncio.get_running_loop().time()
        # An erasure is published at once: the stored snapshot must forget them too.
        due = forgot or now - reco_published[0] >= settings.reco_snapshot_seconds
        if offset > state.offset and due:
            snapshot = RecoSnapshot(state.version + 1, state.recommender, offset)
            if await retry(partial(reco.publish, snapshot)):
                reco_box[:] = [snapshot]
                reco_published[0] = now
                metrics.MODEL_VERSION.labels("reco").set(snapshot.version)
            else:
                reco_box.clear()  # someone published a newer one: reload

    learner_box: list[ChurnLearner] = []

    async def current_learner() -> ChurnLearner:
        """This process's learner, reloaded when another process published a newer one."""
        if not learner_box or await model_store.version() > learner_box[0].version:
            snapshot = await model_store.load()
            learner_box[:] = [
                ChurnLearner(snapshot) if snapshot else ChurnLearner.fresh(settings.churn_model)
            ]
        return learner_box[0]

    @app.agent(training, concurrency=1, name="learner")
    async def learner(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=1.0):
            with _committed_only_if_handled(events):
                await learn_examples(events)

    async def learn_examples(events: Any) -> None:
        pairs = _examples(events)
        model = await retry(current_learner)
        if model.learn(pairs).learned:
            snapshot = model.snapshot()
            # Published, it is also what this process scores with from now on.
            if not await retry(partial(model_store.publish, snapshot)):
                learner_box.clear()  # someone published a newer one: reload

    @app.agent(triggers.rewards_topic, concurrency=1, name="offer-learner")
    async def offer_learner(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=1.0):
            with _committed_only_if_handled(events):
                records = [(e.message.offset, e.message.value) for e in events]
                await retry(partial(triggers.learn, records))

    @app.timer(interval=settings.clv_refit_seconds)  # type: ignore[untyped-decorator]
    async def refit_clv() -> None:
        """One worker per interval refits lifetime value on every customer's summary."""
        try:
            if not await clv.lock(max(1, int(settings.clv_refit_seconds))):
                return
            summaries = await clv.summaries()
            as_of = await store.watermark()
            # Fitting takes a second for 100k customers: off the event loop.
            snapshot = await asyncio.to_thread(refit, summaries, as_of, clv.get())
            if snapshot is not None and await clv.publish(snapshot):
                metrics.MODEL_VERSION.labels("clv").set(snapshot.version)
                metrics.CLV_CUSTOMERS.set(snapshot.customers)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()

    @app.timer(interval=settings.model_refresh_seconds)  # type: ignore[untyped-decorator]
    async def refresh_model() -> None:
        try:
            await registry.refresh()
            await clv.refresh()
            await reco.refresh()
            await triggers.policies.refresh()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()
            return
        snapshot = registry.current
        if snapshot is not None:
            quality = snapshot.quality
            metrics.MODEL_VERSION.labels("churn").set(snapshot.version)
            metrics.MODEL_EXAMPLES.labels("churn").set(quality.examples)
            metrics.MODEL_ROC_AUC.labels("churn").set(quality.auc)
            metrics.MODEL_LOG_LOSS.labels("churn").set(quality.log_loss)
            metrics.MODEL_DRIFT_ALARMS.labels("churn").set(quality.drifts)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def profile_count() -> None:
        try:
            metrics.PROFILES.set(await store.count())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()

    from cdpulse.app.views import register_views

    register_views(services)
    register_segment_views(app, segments)
    from cdpulse.app.trigger_views import register_trigger_views

    register_trigger_views(app, triggers, store)
    return app, services


def _recommendation_lists(
    snapshot: RecoSnapshot | None,
    result: BatchResult,
    throttle: ListThrottle,
    pseudonyms: Pseudonymizer,
) -> list[tuple[str, bytes, float]]:
    """One list per customer with an item event in the batch, caused by the newest one,
    unless the customer had one less than the throttle's interval (event time) before.

    Each comes with the Kafka append time of its cause (0.0: unknown), for its latency.
    The recommender knows customers by pseudonym (its input topic outlives an erasure);
    the list, for downstream services, names the customer.
    """
    if snapshot is None:
        return []
    newest: dict[str, ItemEvent] = {}
    for item in result.item_events:
        newest[item.customer_id] = item
    profiles = {pseudonyms.of_id(p.id): p for p in result.saved}
    out = []
    for pseudonym, cause in newest.items():
        profile = profiles.get(pseudonym)
        if profile is None or not allows(profile, "personalization"):
            continue  # README: consent matrix
        customer = profile.id
        if not throttle.due(customer, cause.at_ms):
            continue
        context = Context.from_profile(profile)
        items = snapshot.recommender.recommend(pseudonym, context, k=10)
        document = recommendation_list(customer, items, snapshot, str(cause.event.get("event_id")))
        out.append((customer, document.model_dump_json().encode(), cause.ingested))
        metrics.RECOMMENDATIONS.inc()
    return out


def _erasure_records(
    erasure: Erasure, compacted: list[Any], reco_events: Any, audit: Any, pseudonyms: Pseudonymizer
) -> list[tuple[Any, bytes, bytes | None]]:
    """What an erasure publishes: a tombstone per id to each compacted topic, a forget
    record per id to the recommender's learner, and the audit record."""
    out: list[tuple[Any, bytes, bytes | None]] = []
    for profile_id in erasure.ids:
        out += [(topic, profile_id.encode(), None) for topic in compacted]
        pseudonym = pseudonyms.of_id(profile_id)
        out.append((reco_events, pseudonym.encode(), json.dumps({"forget": pseudonym}).encode()))
    out.append((audit, erasure.subject.encode(), erasure.audit_json()))
    return out


def _forget_record(raw: bytes) -> str | None:
    """The pseudonym a forget record names, or None for an item event."""
    if not raw.startswith(b'{"forget"'):
        return None
    return str(json.loads(raw)["forget"])


def _pseudonymous(examples: list[Example], pseudonyms: Pseudonymizer) -> list[Example]:
    """Training examples name the customer by pseudonym: the topic outlives an erasure."""
    return [replace(ex, profile_id=pseudonyms.of_id(ex.profile_id)) for ex in examples]


def _examples(events: Any) -> list[tuple[int, Example]]:
    """(offset, example) pairs; the training topic is ours, but a bad record is skipped."""
    pairs = []
    for event in events:
        try:
            pairs.append((event.message.offset, Example.from_json(event.message.value)))
        except (ValueError, TypeError, KeyError):
            log.error("unreadable training example at offset %s; skipped", event.message.offset)
    return pairs


@contextmanager
def _committed_only_if_handled(events: Any) -> Iterator[None]:
    """Keep a batch whose handling raised (the app stopping mid-retry, say) uncommitted.

    ``take_events`` acks its batch in a ``finally``, so even when the loop body raises.
    A message already marked acked is skipped by the consumer's bookkeeping: it leaves
    a gap no commit passes, and the batch is redelivered to the partition's next owner.
    The mark also lets the consumer's wait for unacked messages at shutdown end.
    """
    try:
        yield
    except BaseException:
        for event in events:
            event.message.acked = True
        raise


def _record_lag(app: faust.App, messages: list[Message]) -> None:
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic, m.partition)] = max(m.offset, last.get((m.topic, m.partition), -1))
    for (topic, partition), offset in last.items():
        try:
            highwater = app.consumer.highwater(faust.types.TP(topic, partition))
        except Exception:  # lag is best-effort telemetry; never fail a batch over it
            continue
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(0, highwater - offset - 1))
