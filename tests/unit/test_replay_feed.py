"""How a replay ends: empty batches until nothing more is due, and never forever."""

from __future__ import annotations

import asyncio
import json

from cdpulse.contract.message import Message
from cdpulse.contract.partitions import partition_of
from cdpulse.contract.topics import Topics
from cdpulse.pipeline.batch import BatchReport
from cdpulse.pipeline.replay import Messages, feed
from cdpulse.settings import Settings

SETTINGS = Settings()
CUTTER = Messages(Topics.from_settings(SETTINGS), SETTINGS.topic_partitions, partition_of)
LINE = json.dumps(
    {
        "event_id": "e1",
        "type": "page_viewed",
        "timestamp": "2026-01-01T00:00:00Z",
        "customer_id": "C-1",
        "channel": "web",
        "properties": {"url": "/"},
    }
).encode()


def _replay(reports: list[BatchReport]) -> list[int]:
    """Feed one event, the empty batches answering ``reports`` in turn (then all
    polled); the sizes of the batches flushed."""
    flushed: list[int] = []
    answers = iter(reports)

    async def flush(batch: list[Message]) -> BatchReport:
        flushed.append(len(batch))
        if batch:
            return BatchReport()
        return next(answers, BatchReport())

    assert asyncio.run(feed([LINE], CUTTER, flush, batch_size=10)) == (1, 0)
    return flushed


def _more(due: set[str], cut: tuple[int, str] | None = None) -> BatchReport:
    return BatchReport(polled_all=False, due=due, due_cut=cut)


def test_empty_batches_follow_while_more_was_due_than_a_batch_polls() -> None:
    moving = [_more({"A", "B"}, (10, "B")), _more({"C", "D"}, (20, "D")), _more({"E"})]
    assert _replay(moving) == [1, 0, 0, 0, 0]
    assert _replay([]) == [1, 0]


def test_the_same_due_profiles_and_cut_twice_end_the_replay() -> None:
    stuck = [_more({"A", "B"}, (10, "B"))] * 100
    assert _replay(stuck) == [1, 0, 0]
    # The same profiles, cut further on: still deciding.
    further = [_more({"A", "B"}, (10, "B")), _more({"A", "B"}, (20, "B")), *stuck]
    assert _replay(further) == [1, 0, 0, 0, 0]
