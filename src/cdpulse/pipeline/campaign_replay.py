"""``cdpulse evaluate campaign``: campaign response replayed in-process over a file.

The worker's pipeline (``replay.replay_pipeline``: the same stages, labelers and cuts
by partition, over memory) labels the exposures; each is predicted by the model before
it is learned (test-then-train), as the live learner measures itself. The baseline
beside it is each exposure kind's own response rate so far (emails vs offers): what a
model that knows nothing of the customer gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.models.campaign.labels import CampaignExample, CampaignLabeler
from cdpulse.models.campaign.model import CampaignLearner, CampaignSnapshot
from cdpulse.models.campaign.scoring import propensity
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.models.quality import ModelQuality
from cdpulse.pipeline.batch import BatchReport
from cdpulse.pipeline.replay import Messages, Partitioner, feed, replay_pipeline
from cdpulse.pipeline.stages import Models
from cdpulse.profile.model import decode
from cdpulse.settings import Settings


@dataclass
class KindRate:
    """The baseline: the response rate of the exposure's kind so far (Laplace-smoothed)."""

    counts: dict[bool, list[int]] = field(default_factory=lambda: {False: [0, 0], True: [0, 0]})
    quality: ModelQuality = field(default_factory=ModelQuality)

    def learn(self, example: CampaignExample) -> None:
        responded, seen = self.counts[example.offer]
        self.quality.update(example.label, (responded + 1) / (seen + 2))
        self.counts[example.offer] = [responded + example.label, seen + 1]


@dataclass
class CampaignEvaluation:
    """What a replay measured."""

    events: int
    rejected: int
    model: dict[str, float]
    baseline: dict[str, float]
    snapshot: CampaignSnapshot | None
    examples: list[CampaignExample]
    # each customer's email propensity at the end (None: not scored, consent)
    scores: dict[str, dict[str, Any] | None]


async def replay_campaign(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> CampaignEvaluation:
    """Replay JSON Lines (in event-time order) through the worker's stages in-process and
    learn the campaign labels they decide, in the order the worker publishes them."""
    learner = CampaignLearner.fresh()
    baseline = KindRate()
    models = Models()
    snapshot: list[CampaignSnapshot] = []
    state, pipeline = replay_pipeline(
        settings,
        models,
        ChurnLabeler.from_settings(settings),  # as the worker: it drops what a refusal kept
        partition_of,
        campaign=CampaignLabeler.from_settings(settings),
    )
    cutter = Messages(Topics.from_settings(settings), settings.topic_partitions, partition_of)
    learned: list[CampaignExample] = []

    async def flush(batch: list[Message]) -> BatchReport:
        report = await pipeline.run(batch)
        labelled = report.work.campaign
        start = len(learned)
        learned.extend(labelled)
        for example in labelled:
            baseline.learn(example)
        if learner.learn(list(enumerate(labelled, start))).learned:
            snapshot[:] = [learner.snapshot()]
        return report

    events, rejected = await feed(lines, cutter, flush, batch_size, progress)
    newest = snapshot[0] if snapshot else None
    as_of = max(state.watermarks.values(), default=0)
    scores = {}
    for profile_id in sorted(state.blobs):
        profile = decode(state.blobs[profile_id][1])
        if profile.customer_id is not None:
            scores[profile_id] = propensity(profile, newest, False, as_of)
    return CampaignEvaluation(
        events=events,
        rejected=rejected,
        model=learner.quality.summary(),
        baseline=baseline.quality.summary(),
        snapshot=newest,
        examples=learned,
        scores=scores,
    )
