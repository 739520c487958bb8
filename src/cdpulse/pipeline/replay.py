"""``cdpulse evaluate churn|clv``: the streaming code path, replayed in-process over a file.

The replay runs the very same pipeline, stages, labeler, learner and scoring the worker
and the learner run, with the in-memory state store and outlet instead of Redis and
Kafka, and batches cut from the file in event time order. Each label is predicted by the
newest model before it is learned (test-then-train), exactly as the live learner measures
itself; a recency-only model learned on the same examples is the baseline beside it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from river import linear_model, optim, preprocessing

from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.campaign.labels import CampaignLabeler
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import ChurnLabeler, Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.churn.scoring import churn_view
from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary, refit
from cdpulse.models.clv.model import summary_from_profile
from cdpulse.models.health import HealthPolicy
from cdpulse.models.personas_labels import PersonaLabeler
from cdpulse.models.quality import ModelQuality
from cdpulse.pipeline.batch import BatchReport, ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile, decode
from cdpulse.profile.rules import Rules, to_millis
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.triggers.rules import TriggerConfig

_RECENCY = FEATURE_NAMES.index("days_since_last_visit")


@dataclass
class RecencyBaseline:
    """Churn from recency alone: the baseline a real model has to beat."""

    model: Any = field(
        default_factory=lambda: (
            preprocessing.StandardScaler()
            | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))
        )
    )
    quality: ModelQuality = field(default_factory=ModelQuality)

    def learn(self, example: Example) -> None:
        x = {"recency": example.features[_RECENCY]}
        self.quality.update(example.label, float(self.model.predict_proba_one(x).get(True, 0.0)))
        self.model.learn_one(x, bool(example.label))


@dataclass
class ChurnEvaluation:
    """What a replay measured."""

    events: int
    rejected: int
    model: dict[str, float]
    baseline: dict[str, float]
    scores: dict[str, float | None]
    snapshot: Snapshot | None
    examples: list[Example] = field(default_factory=list)
    # The score each example got before it was learned, in ``examples`` order.
    predictions: list[float] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)  # as the replay left them
    firings: list[bytes] = field(default_factory=list)  # trigger messages, with ``triggers``


def replay_pipeline(
    settings: Settings,
    models: Models,
    labeler: ChurnLabeler | None,
    partition_of: Partitioner,
    triggers: TriggerConfig | None = None,
    campaign: CampaignLabeler | None = None,
    personas: PersonaLabeler | None = None,
) -> tuple[MemoryState, ProfilePipeline]:
    """The worker's pipeline over memory: the same engine, one shard per partition."""
    partitions = settings.topic_partitions

    def shard_of(profile_id: str) -> int:
        return partition_of(profile_id, partitions)

    state = MemoryState(shard_of=shard_of)
    rules = Rules.from_settings(settings)
    engine = Engine(
        rules,
        models,
        labeler=labeler,
        campaign=campaign,
        personas=personas,
        triggers=triggers,
        trigger_lateness=int(settings.trigger_lateness_seconds * 1000),
        pseudonym=rules.traits.pseudonymizer.of_id,
    )
    pipeline = ProfilePipeline(
        state,
        MemoryOutlet(),
        Stages(engine),
        partitions=len(Topics.from_settings(settings).inputs) * partitions,
        sharding=Sharding(lambda: tuple(range(partitions)), shard_of),
        due_limit=settings.due_per_batch,
        due_per_message=settings.due_per_message,
    )
    return state, pipeline


Partitioner = Callable[[str, int], int]


class Messages:
    """Cuts an event stream into Kafka-like messages: topic by type, partition by key."""

    def __init__(self, topics: Topics, partitions: int, partition_of: Partitioner) -> None:
        self.topics = topics
        self.partitions = partitions
        self.partition_of = partition_of
        self.offsets: dict[tuple[str, int], int] = {}

    def message(self, raw: bytes, event_type: str, key: str) -> Message:
        topic = self.topics.for_type(event_type)
        # Kafka's own partitioner: the replay puts each key where the producer would.
        partition = self.partition_of(key, self.partitions)
        offset = self.offsets.get((topic, partition), -1) + 1
        self.offsets[(topic, partition)] = offset
        return Message(topic, partition, offset, key.encode(), raw)


async def feed(
    lines: Iterable[bytes],
    cutter: Messages,
    flush: Callable[[list[Message]], Awaitable[BatchReport | None]],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Cut ``lines`` into batches of messages for ``flush``, then flush idle batches
    until what the last watermark made due is decided (as a worker's idle timer does);
    the events read and rejected."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    events = rejected = 0
    batch: list[Message] = []
    for raw in lines:
        if not raw.strip():
            continue
        events += 1
        if progress is not None:
            progress(1)
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            rejected += 1
            continue
        event = validate(obj, now=now)
        if isinstance(event, Rejection):
            rejected += 1
            continue
        batch.append(cutter.message(raw, event.type, event.key))
        if len(batch) >= batch_size:
            await flush(batch)
            batch = []
    if batch:
        await flush(batch)
    polled: object = None
    while True:
        report = await flush([])
        # What stays due (``BatchReport.poll``) must not keep a replay going.
        if report is None or report.polled_all or report.poll == polled:
            return events, rejected
        polled = report.poll


async def replay_churn(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    triggers: TriggerConfig | None = None,
) -> ChurnEvaluation:
    """Replay JSON Lines (in event-time order) through the churn path in-process (and the
    trigger rules of ``triggers``, when given)."""
    learner = ChurnLearner.fresh(settings.churn_model, HealthPolicy.from_settings(settings))
    baseline = RecencyBaseline()
    models = Models()
    state, pipeline = replay_pipeline(
        settings, models, ChurnLabeler.from_settings(settings), partition_of, triggers
    )
    cutter = Messages(Topics.from_settings(settings), settings.topic_partitions, partition_of)
    outlet = pipeline.outlet
    training_offset = -1
    learned: list[Example] = []
    predictions: list[float] = []

    async def flush(batch: list[Message]) -> BatchReport:
        nonlocal training_offset
        report = await pipeline.run(batch)
        pairs = []
        learned.extend(report.work.examples)
        for example in report.work.examples:
            training_offset += 1
            pairs.append((training_offset, example))
            baseline.learn(example)
        result = learner.learn(pairs)
        predictions.extend(values[-1] for _, _, values in result.scored)
        if result.learned:
            models.churn = learner.snapshot()
        return report

    events, rejected = await feed(lines, cutter, flush, batch_size, progress)

    snapshot = models.churn
    as_of = max(state.watermarks.values(), default=0)
    scores: dict[str, float | None] = {}
    profiles: dict[str, Profile] = {}
    for profile_id in sorted(state.blobs):
        profile = profiles[profile_id] = decode(state.blobs[profile_id][1])
        scores[profile_id] = (
            churn_view(profile, snapshot, as_of)["risk"]
            if allows(profile, "personalization")
            else None  # README: consent matrix
        )
    return ChurnEvaluation(
        events=events,
        rejected=rejected,
        model=learner.quality.summary(),
        baseline=baseline.quality.summary(),
        scores=scores,
        snapshot=snapshot,
        examples=learned,
        predictions=predictions,
        profiles=profiles,
        firings=outlet.values(Stream.TRIGGERS) if isinstance(outlet, MemoryOutlet) else [],
    )


@dataclass
class ClvEvaluation:
    """Predicted vs actual purchases in a holdout period, for the model and a baseline."""

    customers: int
    calibration_end: int
    holdout_days: float
    model: dict[str, float]
    baseline: dict[str, float]
    snapshot: ClvSnapshot | None


def _errors(predicted: list[float], actual: list[int]) -> dict[str, float]:
    n = max(1, len(actual))
    diffs = [p - a for p, a in zip(predicted, actual, strict=True)]
    return {
        "mae": round(sum(abs(d) for d in diffs) / n, 4),
        "rmse": round((sum(d * d for d in diffs) / n) ** 0.5, 4),
        "predicted": round(sum(predicted), 1),
        "actual": float(sum(actual)),
    }


async def replay_clv(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    holdout_days: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ClvEvaluation:
    """Fit lifetime value on the events before a cutoff, score the purchases after it.

    The calibration events run through the same batch processor and profile rules as the
    worker; the summaries, refit and predictions are the worker's too. The baseline
    projects each customer's own purchase rate so far over the holdout.
    """
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    events: list[tuple[int, bytes, Any]] = []
    for raw in lines:
        if progress is not None:
            progress(1)
        try:
            event = validate(json.loads(raw), now=now)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            continue
        if not isinstance(event, Rejection):
            events.append((to_millis(event), raw, event))
    if not events:
        return ClvEvaluation(0, 0, 0.0, {}, {}, None)
    events.sort(key=lambda e: e[0])
    start, end = events[0][0], events[-1][0]
    holdout = holdout_days if holdout_days is not None else (end - start) / 3 / DAY
    cutoff = end - int(holdout * DAY)

    state, pipeline = replay_pipeline(settings, Models(), None, partition_of)
    cutter = Messages(Topics.from_settings(settings), settings.topic_partitions, partition_of)
    calibration = [cutter.message(raw, e.type, e.key) for t, raw, e in events if t <= cutoff]
    for i in range(0, len(calibration), 500):
        await pipeline.run(calibration[i : i + 500])

    later: dict[str, int] = {}
    for t, _, event in events:
        if t > cutoff and event.type == "order_completed":
            owner = state.aliases.get(event.key, event.key)
            later[owner] = later.get(owner, 0) + 1

    summaries: dict[str, OrderSummary] = {}
    for profile_id in sorted(state.blobs):
        summary = OrderSummary.of(decode(state.blobs[profile_id][1]))
        if summary is not None:
            summaries[profile_id] = summary
    snapshot = refit(summaries.values(), cutoff, None)
    predicted: list[float] = []
    naive: list[float] = []
    actual: list[int] = []
    for profile_id, s in summaries.items():
        inputs = summary_from_profile(
            s.orders, s.first_order_at, s.last_order_at, max(0.0, s.net_revenue), cutoff
        )
        if inputs is None:
            continue
        actual.append(later.get(profile_id, 0))
        naive.append(s.orders / max(1.0, inputs.T) * holdout)
        if snapshot is not None:
            predicted.append(
                float(snapshot.model.predict(*inputs, horizon=holdout).expected_purchases)
            )
    return ClvEvaluation(
        customers=len(actual),
        calibration_end=cutoff,
        holdout_days=round(holdout, 2),
        model=_errors(predicted, actual) if snapshot is not None else {},
        baseline=_errors(naive, actual),
        snapshot=snapshot,
    )
