"""How the worker's batches fill (``adapters/kafka/stream.py`` ``_Intake.fill``).

The intake is built without a faust app: its queue is a plain ``asyncio.Queue`` and it
accepts whatever it takes (the app's generation and flow checks are faust's part).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cdpulse.adapters.kafka.stream import _Intake

WITHIN = 60.0  # a batch that waited for it would end the test by its timeout


def _intake(queue: asyncio.Queue[Any]) -> _Intake:
    intake = object.__new__(_Intake)
    intake.queue = queue  # type: ignore[assignment]
    intake.events, intake.states = [], []
    intake.accept = intake.events.append  # type: ignore[method-assign]
    return intake


def test_events_waiting_when_the_batch_begins_are_due_at_once() -> None:
    async def run() -> list[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(3):
            queue.put_nowait(n)
        intake = _intake(queue)
        await asyncio.wait_for(intake.fill(500, WITHIN, eager=True), 5.0)
        return intake.events

    assert asyncio.run(run()) == [0, 1, 2]


def test_a_batch_begun_idle_waits_within_for_more() -> None:
    async def run() -> tuple[list[Any], bool]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        intake = _intake(queue)
        filling = asyncio.ensure_future(intake.fill(3, WITHIN, eager=True))
        for n in range(3):
            await asyncio.sleep(0.01)
            queue.put_nowait(n)
        await asyncio.wait_for(filling, 5.0)  # full at 3: no wait for WITHIN
        return intake.events, queue.empty()

    assert asyncio.run(run()) == ([0, 1, 2], True)


def test_without_eager_waiting_events_still_wait_within() -> None:
    async def run() -> tuple[bool, list[Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queue.put_nowait("first")
        intake = _intake(queue)
        filling = asyncio.ensure_future(intake.fill(500, 0.5, eager=False))
        await asyncio.sleep(0.05)
        done_early = filling.done()
        queue.put_nowait("second")  # arrives within 0.5 s of the first: same batch
        await asyncio.wait_for(filling, 5.0)
        return done_early, intake.events

    assert asyncio.run(run()) == (False, ["first", "second"])


def test_at_most_max_events_are_taken() -> None:
    async def run() -> tuple[list[Any], int]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(10):
            queue.put_nowait(n)
        intake = _intake(queue)
        await asyncio.wait_for(intake.fill(4, WITHIN, eager=True), 5.0)
        return intake.events, queue.qsize()

    assert asyncio.run(run()) == ([0, 1, 2, 3], 6)
