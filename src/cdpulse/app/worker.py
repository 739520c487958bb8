"""``cdpulse worker``: the profile agent on the input topics, and nothing else.

The agent takes batches of raw messages (``take_events``) and runs each through the
profile pipeline (``pipeline.batch``): one read, the pure stages, the batch's records
published and acknowledged, one write. Faust acks a batch's messages only after the
loop body returns, so offsets are committed only after the broker and Redis both
acknowledged; while either is down the body backs off and retries instead of returning.

Besides the agent, timers: newer model snapshots to score with, an empty batch when the
stream is idle (to decide what became due), and the profile count. The worker's web
server answers health and metrics only; reads are the api role's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import faust
from faust.agents import current_agent

from cdpulse.app.base import Heap, faust_app, partition_of, record_lag, redis_client, retrying
from cdpulse.app.health import Health, commit_readiness, fetch_readiness, register_health
from cdpulse.app.input_quality import Gating, InputQuality
from cdpulse.app.outlet import KafkaOutlet
from cdpulse.app.reporting import record_batch
from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.experiments.definitions import experiments
from cdpulse.models.campaign.labels import CampaignLabeler
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.models.personas_labels import PersonaLabeler
from cdpulse.monitors.health import HOUR
from cdpulse.offers.bandit import OfferPolicy
from cdpulse.ops import metrics
from cdpulse.pipeline.batch import BatchReport, Begun, ProfilePipeline, Sharding
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.pipeline.state import SaveStatus
from cdpulse.privacy.pseudonyms import RememberedPseudonyms
from cdpulse.privacy.seal import Seal
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import SegmentBook, load_book
from cdpulse.settings import Settings
from cdpulse.store.cache import ProfileCache
from cdpulse.store.erasure import Eraser
from cdpulse.store.gate import RedisGateStore
from cdpulse.store.keys import Keys
from cdpulse.store.ledger import RedisLedger
from cdpulse.store.models import (
    RecoShards,
    RedisClvStore,
    campaign_store,
    churn_store,
    offer_store,
    persona_store,
)
from cdpulse.store.redis import RedisProfileStore
from cdpulse.store.segments import RedisMembershipStore
from cdpulse.store.state import RedisState
from cdpulse.triggers.rules import load_rules

log = logging.getLogger(__name__)

# The batch steps' histograms, labelled once: observed on every batch.
WAITED, DECIDED, WRITTEN = (metrics.BATCH_STEP.labels(s) for s in ("waited", "decided", "written"))

T = TypeVar("T")

IDLE_SECONDS = 1.0  # an idle stream still decides what the watermark made due
PSEUDONYMS_REMEMBERED = 200_000


def output_topics(topics: Topics) -> dict[Stream, str]:
    """Where each output stream goes."""
    return {
        Stream.DEAD_LETTER: topics.dead_letter,
        Stream.TRAINING: topics.training,
        Stream.CAMPAIGN_TRAINING: topics.campaign_training,
        Stream.PERSONA_TRAINING: topics.persona_training,
        Stream.RECO_EVENTS: topics.reco_events,
        Stream.SEGMENTS: topics.segments,
        Stream.TRIGGERS: topics.triggers,
        Stream.OFFER_REWARDS: topics.offer_rewards,
        Stream.RECOMMENDATIONS: topics.recommendations,
        Stream.AUDIT: topics.audit,
        Stream.ERASURES: topics.erasures,
    }


@dataclass
class Worker:
    """The worker role's parts, for its timers and for tests."""

    settings: Settings
    app: faust.App
    pipeline: ProfilePipeline
    state: RedisState
    models: Models
    health: Health
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_batch: float = 0.0
    decided_at: int = 0  # the low watermark the last batch decided things at
    more_due: bool = False  # the last batch polled as many due profiles as it may
    # The earliest hour the last batch held a gated situation due for, its hour not
    # judged on every partition when it decided (None: nothing held).
    held: int | None = None
    # Batches being published and written, oldest first: the next batch is decided
    # while the newest is written, and each finishes after the one before it.
    flights: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def newest(self) -> asyncio.Future[None] | None:
        return self.flights[-1] if self.flights else None

    async def land(self, keep: int) -> None:
        """Wait until at most ``keep`` batches are in flight (an error of one is raised)."""
        while len(self.flights) > keep:
            flight = self.flights.pop(0)
            await flight

    def note(self, report: BatchReport) -> None:
        """A batch is written: what the idle timer reads of it."""
        self.decided_at = report.decided_at
        self.more_due = not report.polled_all
        self.held = report.work.held

    def idle_due(self) -> bool:
        """Whether an empty batch would decide something: more was due than the last
        batch took, the low watermark moved past the one it decided at, or the gate has
        judged the hour a situation it held waits for.

        The last matters when the stream has ended: a batch is decided while the one
        before it is written and the gate is judged after each write, so the last batch
        may hold a situation its watermark made due, and the watermark moves no more.
        """
        if self.more_due or self.pipeline.low_watermark > self.decided_at:
            return True
        return self.held is not None and self.released()

    def released(self) -> bool:
        """Whether the gate the stages read has judged the hour held for everywhere."""
        gate = self.models.gate
        return self.held is not None and gate is not None and gate.settled_at(self.held * HOUR)

    async def ground(self) -> None:
        """The agent stops: let the flights end (a stopping retry ends them), unacked."""
        flights, self.flights = self.flights, []
        await asyncio.gather(*flights, return_exceptions=True)


def worker_engine(
    settings: Settings,
    rules: Rules,
    models: Models,
    pseudonym: Callable[[str], str],
    book: SegmentBook,
) -> Engine:
    """Every per-event feature of the worker's stages, as the settings configure them."""
    return Engine(
        rules,
        models,
        labeler=ChurnLabeler.from_settings(settings),
        campaign=CampaignLabeler.from_settings(settings),
        personas=PersonaLabeler.from_settings(settings),
        triggers=load_rules(settings.trigger_rules),
        trigger_lateness=int(settings.trigger_lateness_seconds * 1000),
        book=book,
        experiments=experiments(book, settings.segments_file or "<segments>"),
        item_events=True,
        pseudonym=pseudonym,
    )


def create_worker(settings: Settings) -> tuple[faust.App, Worker]:
    """Build the worker's faust app: the profile agent, its pipeline and its timers."""
    app = faust_app(settings, "worker")
    topics = Topics.from_settings(settings)
    source = app.topic(*topics.inputs, key_type=bytes, value_type=bytes)
    client = redis_client(settings)
    prefix = settings.redis_prefix
    rules = Rules.from_settings(settings)
    pseudonyms = rules.traits.pseudonymizer
    # Ids repeat from batch to batch: their HMAC is computed once.
    pseudonym = RememberedPseudonyms(pseudonyms, PSEUDONYMS_REMEMBERED).of_id
    partitions = settings.topic_partitions

    @functools.lru_cache(maxsize=PSEUDONYMS_REMEMBERED)
    def shard_of(profile_id: str) -> int:
        # murmur2 in Python costs a few µs; a customer is saved many times.
        return partition_of(profile_id, partitions)

    state = RedisState(
        client,
        prefix,
        retention_ms=int(settings.profile_retention_days * 86_400_000),
        pseudonym=pseudonym,
        shard_of=shard_of,
        cache=ProfileCache(settings.profile_cache),
    )
    # Offers are chosen by the newest published policy, or an untrained one until the
    # learner published one: it learns only from the rewards of offers made.
    untrained = OfferPolicy(settings.offer_epsilon)
    models = Models(offers=untrained)
    book = load_book(settings.segments_file)
    engine = worker_engine(settings, rules, models, pseudonym, book)
    ledger = RedisLedger(client, Keys(prefix).erasure_ledger, pseudonyms)
    eraser = Eraser(
        client,
        prefix,
        ledger,
        pseudonyms,
        rules.traits.personal,
        shard_of=shard_of,
        segments=book.names,
        experiments=[e.name for e in engine.experiments],
    )

    def owned() -> tuple[int, ...]:
        """The input partitions this worker owns: the due-time shards it polls."""
        try:
            assigned = app.consumer.assignment()
        except Exception:  # not started or rebalancing: poll nothing this time
            return ()
        return tuple(sorted({tp.partition for tp in assigned if tp.topic == topics.clickstream}))

    pipeline = ProfilePipeline(
        state,
        KafkaOutlet(app, output_topics(topics)),
        Stages(engine),
        partitions=len(topics.inputs) * partitions,
        max_bytes=settings.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        erasures=eraser,
        sharding=Sharding(owned, shard_of),
        due_limit=settings.due_per_batch,
        due_per_message=settings.due_per_message,
    )
    health = Health(settings.stall_seconds)
    heap = Heap(settings.gc_sweep_seconds)
    # data quality of what is consumed, and the input-health flags gated triggers read
    gates = engine.triggers.gates if engine.triggers is not None else {}
    gating = Gating(
        gates,
        RedisGateStore(client, prefix),
        models,
        lambda: pipeline.low_watermark,
        owned,
        partitions,
    )
    inputs = InputQuality(settings.input_sample, gating if gates else None)
    worker = Worker(settings, app, pipeline, state, models, health)

    def retry(call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        # The agent's own stop, not the app's: an agent raising before it is being stopped
        # counts as crashed, and its supervisor restarts it, which stalls the shutdown.
        agent = current_agent()
        stopping = (lambda: agent.should_stop) if agent is not None else lambda: app.should_stop
        return retrying(call, stopping, health.failed)

    def settled(report: BatchReport, messages: list[Message]) -> None:
        """A batch is written: the worker's bookkeeping and the batch's metrics."""
        worker.last_batch = asyncio.get_running_loop().time()
        worker.note(report)
        heap.settle()
        health.succeeded()
        record_batch(report)
        inputs.observe(report.decoded)
        record_lag(app, metrics.CONSUMER_LAG, [(m.topic, m.partition, m.offset) for m in messages])

    async def finish(
        stream: Any,
        events: Sequence[Any],
        messages: list[Message],
        begun: Begun,
        previous: asyncio.Future[None] | None,
        decided: float,
    ) -> None:
        """Publish and write a begun batch once the batch before it is written; then its
        offsets may be committed."""
        with _committed_only_if_handled(events):
            if previous is not None:
                await previous  # failed: this batch, begun on it, waits for redelivery too
            report = await retry(functools.partial(pipeline.finish, begun))
        stream.ack_batch(events)
        settled(report, messages)
        await inputs.sync()
        WRITTEN.observe(time.time() - decided)

    @app.agent(source, concurrency=1, name="profiles")
    async def profiles(stream: Any) -> None:
        # Each batch is decided while the one before it is published and written (the
        # broker's and Redis' time overlaps the worker's); its offsets are acked only
        # once it is written.
        try:
            async for events in stream.take_unacked(
                settings.batch_size, settings.batch_within, settings.batch_bytes
            ):
                messages = [_message(e) for e in events]
                taken = time.time()
                appended = [m.timestamp for m in messages if m.timestamp is not None]
                if appended:
                    WAITED.observe(max(0.0, taken - min(appended)))
                async with worker.lock:
                    await worker.land(keep=1)
                    previous = worker.newest
                    with _committed_only_if_handled(events):
                        begun = await retry(
                            functools.partial(pipeline.begin, messages, previous=previous)
                        )
                    decided = time.time()
                    DECIDED.observe(decided - taken)
                    flight = asyncio.ensure_future(
                        finish(stream, events, messages, begun, previous, decided)
                    )
                    worker.flights.append(flight)
        finally:
            await worker.ground()

    @app.timer(interval=IDLE_SECONDS)  # type: ignore[untyped-decorator]
    async def idle() -> None:
        """Empty batches when the stream is quiet, so what is due gets decided: one after
        another while a batch finds more due than it may take (CDPULSE_DUE_PER_BATCH),
        each taking the lock in turn with the agent's batches."""
        loop = asyncio.get_running_loop()
        if worker.lock.locked() or loop.time() - worker.last_batch < IDLE_SECONDS:
            return
        if worker.held is not None and not worker.released():
            # Another worker may have judged the hour since: read the gate again.
            async with worker.lock:
                await inputs.sync()
        # When what this worker saw is decided, another worker may have moved the shared
        # watermark since (one HGETALL a second while idle).
        if not worker.idle_due() and not await retry(pipeline.shared_watermark_moved):
            return  # everything up to the watermark is decided
        with suppress(asyncio.CancelledError):  # stopping mid-retry: nothing was lost
            polled: object = None
            while True:
                async with worker.lock:
                    await worker.land(keep=0)
                    report = await retry(functools.partial(pipeline.run, []))
                settled(report, [])
                await inputs.sync()
                # What stays due (``BatchReport.poll``) waits for the next tick, not a
                # busy loop.
                if not worker.more_due or app.should_stop or report.poll == polled:
                    return
                polled = report.poll

    seal = Seal.from_settings(settings)
    churn, offers, reco = (
        churn_store(client, prefix, seal),
        offer_store(client, prefix, seal),
        RecoShards(client, prefix, seal),
    )
    sketches = RedisMembershipStore(client, prefix)
    clv = RedisClvStore(client, prefix, seal)
    campaign = campaign_store(client, prefix, seal)
    personas = persona_store(client, prefix, seal)

    @app.timer(interval=settings.model_refresh_seconds)  # type: ignore[untyped-decorator]
    async def refresh_models() -> None:
        """Newer snapshots from the learner: the stages score with them from now on."""
        began = time.perf_counter()
        try:
            await churn.refresh()
            await offers.refresh()
            await sketches.refresh_sketches()
            await clv.refresh()
            await campaign.refresh()
            await personas.refresh()
            if engine.triggers is not None and engine.triggers.rules:
                await reco.refresh()  # trigger messages carry recommendations
        except Exception as exc:  # the batch path reports Redis errors; keep scoring
            metrics.REDIS_ERRORS.inc()
            log.warning("model refresh failed: %s", exc)
            return
        offer_snapshot = offers.get()
        policy = offer_snapshot.policy if offer_snapshot is not None else untrained
        fresh = (
            churn.get(),
            sketches.sketches,
            policy,
            reco.get(),
            clv.get(),
            campaign.get(),
            personas.get(),
        )
        in_use = (
            models.churn,
            models.rfm,
            models.offers,
            models.reco,
            models.clv,
            models.campaign,
            models.personas,
        )
        if all(new is old for new, old in zip(fresh, in_use, strict=True)):
            return
        async with worker.lock:
            # Swapped only while no batch is begun or in flight: a batch decided again
            # after a refused save decides with the models it was first decided with,
            # or a move it published (a segment, an offer) might not be decided again.
            await asyncio.gather(*worker.flights, return_exceptions=True)
            (
                models.churn,
                models.rfm,
                models.offers,
                models.reco,
                models.clv,
                models.campaign,
                models.personas,
            ) = fresh
            version = offer_snapshot.version if offer_snapshot is not None else 0
            models.offer_policy_name = (
                f"epsilon-greedy LinUCB, e={settings.offer_epsilon}, v{version}"
            )
        metrics.MODEL_SWAP.observe(time.perf_counter() - began)
        # The new models are frozen with whatever else survived; the old ones are freed
        # by reference counting, and any cycles among them wait for the next sweep. A
        # full collection here (the whole profile cache, ~0.1-0.2 s) after every newer
        # churn snapshot took 13 % of a worker's CPU at full speed.
        heap.settle()
        if models.clv is not None:  # the fit next purchase is scored and measured with
            metrics.MODEL_VERSION.labels("clv").set(models.clv.version)
        if models.churn is not None:
            quality = models.churn.quality
            metrics.MODEL_VERSION.labels("churn").set(models.churn.version)
            metrics.MODEL_EXAMPLES.labels("churn").set(quality.examples)

    stored = RedisProfileStore(client, prefix)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def profile_count() -> None:
        try:
            metrics.PROFILES.set(await stored.count())
        except Exception:  # telemetry only
            metrics.REDIS_ERRORS.inc()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_cached_profiles(app: Any, revoked: Any, **kwargs: Any) -> None:
        # Partitions may move: another worker may write this worker's cached profiles
        # before they come back, so a cached profile is never trusted across a rebalance,
        # nor a watermark of a batch that may now be applied by another worker.
        state.discard()
        pipeline.forget()
        metrics.ASSIGNED_PARTITIONS.set(0)
        for tp in revoked:  # another worker reports their lag now
            with suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def count_partitions(app: Any, assigned: Any, **kwargs: Any) -> None:
        inputs = set(topics.inputs)
        metrics.ASSIGNED_PARTITIONS.set(sum(1 for tp in assigned if tp.topic in inputs))

    @app.task  # type: ignore[untyped-decorator]
    async def load_scripts() -> None:
        await retrying(state.load_scripts, lambda: app.should_stop, health.failed)
        heap.sweep()

    # Each cause of a retried save is on /metrics at 0 from the start, so a dashboard shows
    # none and the first retry is a rate, not a series appearing.
    for status in SaveStatus:
        if status is not SaveStatus.SAVED:
            metrics.SAVE_RETRIES.labels(status.value)
    readiness = {
        "offsets_committed": commit_readiness(app, settings),
        "fetching": fetch_readiness(app, settings),
    }
    register_health(app, settings, health, client, readiness=readiness)
    return app, worker


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


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
