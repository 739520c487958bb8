"""The worker's queue hand-offs in bulk: the conductor's ``_put_all`` and the intake's
``drain`` against mode's own one-event-at-a-time calls on a twin queue (the oracle)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from cdpulse.adapters.kafka.conductor import _put_all, _puts_in_bulk
from cdpulse.adapters.kafka.stream import _Intake


def _queue(maxsize: int) -> ThrowableQueue[Any]:
    return ThrowableQueue(maxsize, flow_control=FlowControlEvent(initially_suspended=False))


class Calls:
    def __init__(self) -> None:
        self.high = 0
        self.drop = 0

    def on_high(self) -> None:
        self.high += 1

    def on_drop(self) -> None:
        self.drop += 1


def _state(queue: ThrowableQueue[Any], calls: Calls) -> tuple[Any, ...]:
    return (
        list(queue._queue),  # type: ignore[attr-defined]
        queue._unfinished_tasks,  # type: ignore[attr-defined]
        len(queue._pending_pressure_drop_callbacks),
        calls.high,
    )


@settings(max_examples=200, deadline=None)
@given(
    maxsize=st.integers(min_value=1, max_value=60),
    before=st.integers(min_value=0, max_value=60),
    rounds=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=4),
)
def test_put_all_is_one_put_nowait_enhanced_per_event(
    maxsize: int, before: int, rounds: list[int]
) -> None:
    async def run() -> None:
        mine, theirs = _queue(maxsize), _queue(maxsize)
        assert _puts_in_bulk(mine)
        my_calls, their_calls = Calls(), Calls()
        n = 0
        for queue in (mine, theirs):
            for i in range(min(before, maxsize)):
                queue.force_put_nowait(("old", i))
        for count in rounds:
            room = maxsize - mine.qsize()
            events = [("new", n + i) for i in range(min(count, max(room, 0)))]
            n += len(events)
            if not events:
                break
            _put_all(mine, events, my_calls.on_high, my_calls.on_drop)  # type: ignore[arg-type]
            for event in events:
                theirs.put_nowait_enhanced(
                    event,
                    on_pressure_high=their_calls.on_high,
                    on_pressure_drop=their_calls.on_drop,
                )
            assert _state(mine, my_calls) == _state(theirs, their_calls)

    asyncio.run(run())


def _intake(queue: ThrowableQueue[Any]) -> _Intake:
    intake = object.__new__(_Intake)
    intake.queue = queue  # type: ignore[assignment]
    intake.events, intake.states = [], []
    intake.max_bytes, intake.size = None, 0

    def accept(value: Any) -> None:
        intake.events.append(value)

    intake.accept = accept  # type: ignore[method-assign]
    return intake


@pytest.mark.parametrize(("waiting", "most"), [(10, 4), (10, 10), (10, 50), (1, 1)])
def test_drain_takes_in_order_up_to_the_batch_and_wakes_a_waiting_put(
    waiting: int, most: int
) -> None:
    async def run() -> tuple[list[Any], bool, int]:
        queue = _queue(waiting)
        for i in range(waiting):
            queue.force_put_nowait(i)
        put = asyncio.ensure_future(queue.put("late"))
        await asyncio.sleep(0)
        assert not put.done()  # full: it waits for room
        intake = _intake(queue)
        intake.drain(most)
        await asyncio.wait_for(put, 1)  # the drain made room and woke it
        return intake.events, put.done(), queue.qsize()

    events, woken, left = asyncio.run(run())
    taken = min(waiting, most)
    assert events == list(range(taken))
    assert woken
    assert left == waiting - taken + 1


def test_drain_calls_back_the_paused_partitions_once_the_queue_is_empty() -> None:
    async def run() -> tuple[int, int]:
        queue = _queue(10)
        calls = Calls()
        for i in range(10):  # past the pressure-high mark: the callback is pending
            queue.put_nowait_enhanced(
                i, on_pressure_high=calls.on_high, on_pressure_drop=calls.on_drop
            )
        intake = _intake(queue)
        intake.drain(100)
        return calls.high, calls.drop

    assert asyncio.run(run()) == (1, 1)


def test_drain_raises_what_was_thrown_into_the_queue() -> None:
    async def run() -> None:
        queue = _queue(10)
        queue.force_put_nowait(1)
        queue._throw(StopAsyncIteration())  # type: ignore[attr-defined]
        _intake(queue).drain(100)

    with pytest.raises(StopAsyncIteration):
        asyncio.run(run())
