"""faust's Stream, whose ``take_events`` reads its channel's queue a batch at a time.

faust's ``take_events`` runs every event through the stream's own iterator in a
background task (a ``sleep(0)`` and an awaited queue get per event, a processor
call, two sensor calls) and then acks each event on its own (``Stream.ack`` ->
``Message.ack`` -> ``Consumer.ack``, two sensor calls). :meth:`BatchStream.take_events`
takes every event already queued in one go, waits only when the queue is empty, and
acks a batch in one call (:meth:`BatchConsumer.ack_messages`).

What a batch means is unchanged: at most ``max_`` events, yielded no later than
``within`` seconds after its first event arrived, acked after the loop body returns,
also when it raised (faust's ``finally``). Events fetched before a rebalance
(another generation, or flow suspended) are dropped unacked: the consumer reads
their partitions again from the committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.times import want_seconds

from cdpulse.adapters.kafka.consumer import BatchConsumer


class BatchStream(faust.Stream[Any]):
    """A faust Stream whose acks all reach the consumer through ``Consumer.ack``."""

    def __aiter__(self) -> AsyncIterator[Any]:
        # faust's Cython iterator records acks in the consumer's ``_acked_index``
        # itself; the Python one calls ``Message.ack``, which BatchConsumer keeps.
        iterator = cast(AsyncGenerator[Any, None], self._py_aiter())
        self._active_agens.add(iterator)
        return iterator

    def take_events(self, max_: int, within: Any) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        """Batches of at most ``max_`` events, each at most ``within`` s after its first.

        Falls back to faust's own when the stream transforms events (processors,
        joins, combined streams) or the consumer is not a :class:`BatchConsumer`.
        """
        plain = not (self._processors or self.join_strategy or self.combined)
        if not plain or not isinstance(self.app.consumer, BatchConsumer):
            return super().take_events(max_, within)
        batches = self._take_batches(max_, want_seconds(within) if within else None)
        self._active_agens.add(batches)
        return batches

    def take_unacked(
        self, max_: int, within: Any, max_bytes: int | None = None
    ) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        """``take_events`` whose batches are acked by ``ack_batch``, not by the loop.

        For an agent that keeps a batch in flight past its loop body (the worker writes
        one batch while it decides the next): its offsets are committed only once it
        acks the batch, after the write. Its batches are eager (``_Intake.fill``): the
        events that queued while the agent decided the batch before are the next batch,
        with no wait of ``within`` added to their latency. ``max_bytes`` bounds a batch
        by its messages' values too: a batch of large messages ends sooner (never empty).
        """
        consumer = self.app.consumer
        if not isinstance(consumer, BatchConsumer) or (
            self._processors or self.join_strategy or self.combined
        ):
            raise TypeError("take_unacked needs a plain BatchStream on a BatchConsumer")
        seconds = want_seconds(within) if within else None
        batches = self._take_batches(max_, seconds, acks=False, eager=True, max_bytes=max_bytes)
        self._active_agens.add(batches)
        return batches

    def ack_batch(self, events: Sequence[EventT[Any]]) -> None:
        """Ack a batch of ``take_unacked``: its offsets may be committed now."""
        cast(BatchConsumer, self.app.consumer).ack_messages([event.message for event in events])

    async def _take_batches(
        self,
        max_: int,
        within: float | None,
        acks: bool = True,
        eager: bool = False,
        max_bytes: int | None = None,
    ) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        self._finalized = True
        started_by_us = await self.maybe_start()
        consumer = cast(BatchConsumer, self.app.consumer)
        intake = _Intake(self, max_bytes)
        try:
            while not self.should_stop:
                await intake.fill(max_, within, eager)
                if not intake.events:
                    continue
                batch, states = intake.take()
                self.events_total += len(batch)
                try:
                    yield batch
                finally:
                    if acks:
                        consumer.ack_messages([event.message for event in batch])
                    if states:
                        intake.sensors_out(batch, states)
        except StopAsyncIteration:
            # faust ends a stream by throwing this into its channel's queue; an async
            # generator may not let it out (RuntimeError), so end as faust's iterator does.
            return
        finally:
            self._channel_stop_iteration(self.channel)
            if started_by_us:
                await self.stop()
                self.service_reset()


class _Intake:
    """The events of one stream's next batch, taken from its channel's queue.

    Settings are read once here, not per event: a faust setting costs ~1 µs to read.
    """

    def __init__(self, stream: BatchStream, max_bytes: int | None = None) -> None:
        app = stream.app
        self.stream = stream
        self.queue = cast(ChannelT[Any], stream.channel).queue
        self.app = app
        self.flow_active = app.flow_control.is_active
        self.acking_topics = app.topics.acking_topics
        self.unacked = app.consumer.unacked
        # Only wait_empty reads the unacked set: without it, no WeakSet add per event.
        self.track = bool(app.conf.stream_wait_empty)
        self.sensors = bool(getattr(app, "per_message_sensors", True))
        # The app's event class, compared by identity before the (ABC) isinstance check.
        self.event_type: Any = getattr(app.conf, "Event", EventT)
        self.events: list[EventT[Any]] = []
        self.states: list[Any] = []
        # Bytes of the batch's message values, counted only under a bound.
        self.max_bytes = max_bytes
        self.size = 0

    def take(self) -> tuple[list[EventT[Any]], list[Any]]:
        events, states = self.events, self.states
        self.events, self.states = [], []
        self.size = 0
        return events, states

    def full(self, max_: int) -> bool:
        if len(self.events) >= max_:
            return True
        return self.max_bytes is not None and self.size >= self.max_bytes

    async def fill(self, max_: int, within: float | None, eager: bool = False) -> None:
        """Take events until ``max_``, or until ``within`` s after the first one.

        ``eager``: events that were already waiting when the batch began make it due as
        soon as the queue is empty. They have waited for the batch before (for as long
        as it took), and while a batch is decided the next one fills by itself: a wait
        of ``within`` only pays when the agent was idle for the first event.
        """
        queue, events, accept, full = self.queue, self.events, self.accept, self.full
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        waited = False
        while not full(max_):
            if not queue.empty():
                self.drain(max_)
                continue
            if eager and events and not waited:
                return
            waited = True
            if not events or within is None:
                accept(await queue.get())
                if events and within is not None:
                    deadline = loop.time() + within
                continue
            if deadline is None:
                deadline = loop.time() + within
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                value = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                return
            accept(value)

    def drain(self, max_: int) -> None:
        """Take what the queue holds, up to the batch's bounds, in one go.

        What ``get_nowait`` does per event is done here once for the lot: mode's
        pressure-drop check (before and after: a drained queue calls every pending
        callback, so the partitions it paused fetch again at once) and asyncio's wakeup of
        a producer waiting for room (one per event taken). Measured on the bench's
        worker: ``get_nowait`` per event was 1.2 % of its CPU. A queue holding an error
        (faust ends a stream by throwing one into it) is read as ``get_nowait`` reads it.
        """
        queue: Any = self.queue
        if getattr(queue, "_errors", None) or not hasattr(queue, "maybe_endorse_pressure_drop"):
            self.accept(queue.get_nowait())
            return
        full, accept = self.full, self.accept
        waiting = queue._queue
        popleft = waiting.popleft
        taken = 0
        queue.maybe_endorse_pressure_drop()
        while waiting and not full(max_):
            accept(popleft())
            taken += 1
        putters = queue._putters
        for _ in range(taken):
            if not putters:
                break
            queue._wakeup_next(putters)
        queue.maybe_endorse_pressure_drop()

    def accept(self, value: Any) -> None:
        if type(value) is not self.event_type and not isinstance(value, EventT):
            raise TypeError(
                f"take_events on {self.stream.channel!r} got {type(value).__name__}, "
                "not an event: iterate the stream with `async for` instead"
            )
        message = value.message
        if not self.flow_active() or message.generation_id != self.app.consumer_generation_id:
            return
        tracking = self.track or self.sensors
        if tracking and not message.tracked and message.topic in self.acking_topics:
            message.tracked = True
            if self.track:
                self.unacked.add(message)
            if self.sensors:
                self.stream._on_message_in(message.tp, message.offset, message)
        if self.sensors:
            self.states.append(
                self.stream._on_stream_event_in(message.tp, message.offset, self.stream, value)
            )
        if self.max_bytes is not None:
            self.size += len(message.value or b"")
        self.events.append(value)

    def sensors_out(self, batch: Sequence[EventT[Any]], states: Sequence[Any]) -> None:
        stream = self.stream
        for event, state in zip(batch, states, strict=True):
            message = event.message
            stream._on_stream_event_out(message.tp, message.offset, stream, event, state)
            if message.acked:
                stream._on_message_out(message.tp, message.offset, message)
