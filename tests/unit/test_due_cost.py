"""``python -m cdpulse.bench.due_cost``: the worker's pipeline in memory, its saves split
by cause. The counts are checked against what the batches' reports say."""

from __future__ import annotations

import asyncio

from cdpulse.bench import due_cost
from cdpulse.bench.stages import messages_of
from cdpulse.bench.workload import shop_workload
from cdpulse.contract.topics import Topics
from cdpulse.pipeline.batch import BatchReport
from cdpulse.settings import Settings


def test_saves_split_into_with_events_and_due_only() -> None:
    settings = Settings()
    workload = shop_workload(6_000, 300, 3)
    messages = messages_of(
        workload.records, Topics.from_settings(settings), settings.topic_partitions
    )
    pipe = due_cost.pipeline(settings)
    reports: list[BatchReport] = []
    run = pipe.run

    async def recorded(batch: list[object]) -> BatchReport:
        report = await run(batch)  # type: ignore[arg-type]
        reports.append(report)
        return report

    pipe.run = recorded  # type: ignore[method-assign]
    timed, due = asyncio.run(due_cost.measure(pipe, messages[:4_000], messages[4_000:], 100))
    empty = [r for r in reports if r.messages == 0]
    with_events = [r for r in reports[1:] if r.messages and r.messages <= 100]
    # The empty batches saved only profiles loaded for what came due, and some were.
    assert due.events == 0 and due.due == sum(len(r.work.saved) for r in empty) > 0
    # The timed batches' saves, split: together every profile they saved.
    assert timed.events + timed.due == sum(len(r.work.saved) for r in with_events)
    assert timed.events > 0
    assert timed.cpu > 0 and due.cpu > 0
