"""How the worker's batches fill (``adapters/kafka/stream.py`` ``_Intake.fill``).

The intake is built without a faust app: its queue is a plain ``asyncio.Queue`` and it
accepts whatever it takes (the app's generation and flow checks are faust's part).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cdpulse.adapters.kafka.stream import _Intake

WITHIN = 60.0  # a batch that waited for it would end the test by its timeout


def _intake(queue: asyncio.Queue[Any], max_bytes: int | None = None) -> _Intake:
    """Values are bytes, counted as ``accept`` counts a message's value."""
    intake = object.__new__(_Intake)
    intake.queue = queue  # type: ignore[assignment]
    intake.events, intake.states = [], []
    intake.max_bytes, intake.size = max_bytes, 0

    def accept(value: Any) -> None:
        intake.size += len(value) if max_bytes is not None else 0
        intake.events.append(value)

    intake.accept = accept  # type: ignore[method-assign]
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


def test_a_batch_ends_once_its_messages_hold_max_bytes() -> None:
    async def run() -> tuple[list[Any], list[Any], int]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(10):
            queue.put_nowait(bytes(300 if n < 6 else 1000))
        intake = _intake(queue, max_bytes=2000)
        await asyncio.wait_for(intake.fill(500, WITHIN, eager=True), 5.0)
        first, _ = intake.take()
        # The message that reaches the bound ends the batch; the next holds at least one.
        await asyncio.wait_for(intake.fill(500, WITHIN, eager=True), 5.0)
        return [len(v) for v in first], [len(v) for v in intake.events], intake.size

    first, second, size = asyncio.run(run())
    assert first == [300] * 6 + [1000]  # 1,800 bytes < 2,000: one more, 2,800
    assert second == [1000, 1000]  # 2,000: full
    assert size == 2000


def test_one_message_over_max_bytes_is_a_batch_of_its_own() -> None:
    async def run() -> list[list[int]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for n in (5000, 10, 10):
            queue.put_nowait(bytes(n))
        intake = _intake(queue, max_bytes=100)
        batches = []
        for _ in range(2):
            await asyncio.wait_for(intake.fill(500, WITHIN, eager=True), 5.0)
            batches.append([len(v) for v in intake.take()[0]])
        return batches

    assert asyncio.run(run()) == [[5000], [10, 10]]
