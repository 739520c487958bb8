"""``cdpulse evaluate personas`` and the live-equals-replay test: personas replayed
in-process over a file.

The worker's pipeline (``replay.replay_pipeline``: the same stages, labelers and cuts by
partition, over memory) decides the persona examples; the learner learns them in the
order the worker publishes them, and each customer's persona is read from the final
profile as the api reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.models.personas_labels import PersonaExample, PersonaLabeler
from cdpulse.models.personas_learner import PersonaLearner, PersonaState, persona_of
from cdpulse.pipeline.batch import BatchReport
from cdpulse.pipeline.replay import Messages, Partitioner, feed, replay_pipeline
from cdpulse.pipeline.stages import Models
from cdpulse.profile.model import decode
from cdpulse.settings import Settings


@dataclass
class PersonaReplay:
    """What a replay decided and learned."""

    events: int
    rejected: int
    examples: list[PersonaExample]
    state: PersonaState
    # each customer's persona at the end (None: none, or no consent)
    personas: dict[str, dict[str, Any] | None]


async def replay_personas(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> PersonaReplay:
    """Replay JSON Lines (in event-time order) through the worker's stages in-process and
    learn the persona examples they decide, in the order the worker publishes them."""
    learner = PersonaLearner.fresh(
        settings.persona_k, settings.persona_warmup, settings.persona_checkpoint_examples
    )
    state, pipeline = replay_pipeline(
        settings,
        Models(),
        ChurnLabeler.from_settings(settings),  # as the worker: it drops what a refusal kept
        partition_of,
        personas=PersonaLabeler.from_settings(settings),
    )
    cutter = Messages(Topics.from_settings(settings), settings.topic_partitions, partition_of)
    learned: list[PersonaExample] = []

    async def flush(batch: list[Message]) -> BatchReport:
        report = await pipeline.run(batch)
        start = len(learned)
        learned.extend(report.work.personas)
        learner.learn(list(enumerate(report.work.personas, start)))
        return report

    events, rejected = await feed(lines, cutter, flush, batch_size, progress)
    final = learner.snapshot()
    personas = {}
    for profile_id in sorted(state.blobs):
        profile = decode(state.blobs[profile_id][1])
        if profile.customer_id is not None:
            personas[profile_id] = persona_of(profile, final)
    return PersonaReplay(events, rejected, learned, final, personas)
