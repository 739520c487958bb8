"""What a worker that keeps up pays per event, and how much of it is due work.

``python -m cdpulse.bench.due_cost [--batch 500] [--warm 200000] [--timed 50000]``

The simulated shop's events (``Shop``, as the bench's workload) go through the worker's
profile pipeline over the in-memory store, with the worker's engine (churn labels,
campaign and persona labels, triggers, segments, experiments, item events) and every
shard owned: ``--warm`` events in batches of 40,000 untimed (profiles grown as a
backlog leaves them), then empty batches until nothing more is due (what the backlog
left due, decided alone: due-only saves), then ``--timed`` events in batches of
``--batch`` (what a worker that keeps up takes: ~50 ms of events at half capacity).

Printed: the CPU per due-only save of the empty batches (``time.process_time``), and
for the timed part its CPU per 1,000 events and the profiles it saved with events and
only for what came due (``cdpulse_profiles_saved``'s two causes). The in-memory store
decodes every profile it lends and keeps no cache, so its CPU is not the worker's
(Redis' and Kafka's share is not in it either); the counts are. ``cdpulse bench``
measures the roles whole.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cdpulse.app.base import partition_of
from cdpulse.app.worker import worker_engine
from cdpulse.bench.stages import messages_of
from cdpulse.bench.workload import shop_workload
from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.pipeline.batch import BatchReport, ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.stages import Models, Stages
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import load_book
from cdpulse.settings import Settings

WARM_BATCH = 40_000  # the default CDPULSE_BATCH_SIZE: a backlog's batches


@dataclass
class Saves:
    """Profiles saved over some batches, by cause, and the CPU they took."""

    events: int = 0
    due: int = 0
    cpu: float = 0.0

    def add(self, report: BatchReport) -> None:
        with_events, due_only = report.saved_by_cause
        self.events += with_events
        self.due += due_only


def pipeline(settings: Settings) -> ProfilePipeline:
    """The worker's pipeline (``app/worker.py``) over the in-memory store."""
    rules = Rules.from_settings(settings)
    book = load_book(settings.segments_file)
    engine = worker_engine(settings, rules, Models(), rules.traits.pseudonymizer.of_id, book)
    partitions = settings.topic_partitions
    every = tuple(range(partitions))

    def shard_of(profile_id: str) -> int:
        return partition_of(profile_id, partitions)  # as the worker shards its schedules

    return ProfilePipeline(
        MemoryState(shard_of),
        MemoryOutlet(),
        Stages(engine),
        partitions=len(Topics.from_settings(settings).inputs) * partitions,
        sharding=Sharding(lambda: every, shard_of),
        due_limit=settings.due_per_batch,
        due_per_message=settings.due_per_message,
    )


async def measure(
    pipe: ProfilePipeline, warm: Sequence[Message], timed: Sequence[Message], batch: int
) -> tuple[Saves, Saves]:
    """After ``warm``, the due-only batches' saves and CPU, then the timed events' (returned
    as ``(timed, due only)``)."""
    for at in range(0, len(warm), WARM_BATCH):
        await pipe.run(list(warm[at : at + WARM_BATCH]))
        gc.freeze()  # as the worker's Heap: what survives a batch is not traversed again
    with_events, due_only = Saves(), Saves()
    # What the backlog's batches left due, decided alone: due-only saves, nothing else.
    began = time.process_time()
    while True:
        report = await pipe.run([])
        gc.freeze()
        due_only.add(report)
        if not report.work.saved:
            break
    due_only.cpu = time.process_time() - began
    began = time.process_time()
    for at in range(0, len(timed), batch):
        with_events.add(await pipe.run(list(timed[at : at + batch])))
        gc.freeze()
    with_events.cpu = time.process_time() - began
    return with_events, due_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.due_cost")
    parser.add_argument("--batch", type=int, default=500, help="events per timed batch")
    parser.add_argument("--warm", type=int, default=200_000, help="events first, untimed")
    parser.add_argument("--timed", type=int, default=50_000, help="events timed")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    settings = Settings()
    workload = shop_workload(args.warm + args.timed, args.customers, args.seed)
    topics = Topics.from_settings(settings)
    messages = messages_of(workload.records, topics, settings.topic_partitions)
    gc.collect()
    gc.freeze()
    timed, due = asyncio.run(
        measure(pipeline(settings), messages[: args.warm], messages[args.warm :], args.batch)
    )
    events = len(messages) - args.warm
    per_save = due.cpu / due.due * 1e6 if due.due else 0.0
    print(
        f"after {args.warm:,} events in batches of {WARM_BATCH:,}, empty batches saved "
        f"{due.due:,} profiles only for what came due: {per_save:,.0f} µs of CPU each"
    )
    print(
        f"{events:,} events in batches of {args.batch:,}: "
        f"{timed.cpu / events * 1000:.3f} CPU s per 1,000 events; profiles saved per "
        f"1,000 events: {timed.events / events * 1000:,.0f} with events, "
        f"{timed.due / events * 1000:,.0f} only for what came due"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
