"""faust's conductor, handing a partition's fetched messages to its streams in one call.

faust's conductor takes one message per call: a lock, a handler lookup, a flow-control
wait and a producer-buffer wait per message. :meth:`BatchConductor.deliver` does those
once per partition and batch; decoding, reference counts and backpressure stay
faust's, per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.exceptions import KeyDecodeError, ValueDecodeError
from faust.serializers import codecs
from faust.serializers.registry import Registry
from faust.transport.conductor import Conductor
from faust.types import TP, AppT, EventT, Message
from mode.utils.queues import FlowControlQueue

if TYPE_CHECKING:
    from cdpulse.adapters.kafka.consumer import BatchConsumer

_RAW = (None, "raw")

# A channel queue bounded by bytes still holds at least this many events, so a batching
# stream always finds a batch or two waiting however large the messages are.
PREFETCH_FLOOR = 1_000


def bound_by_bytes(queue: Any, messages: Sequence[Message], limit: int, most: int) -> None:
    """Shrink or grow ``queue``'s maxsize so it holds about ``limit`` bytes of values.

    faust bounds a channel's queue by a count of events (``stream_buffer_maxsize``): a
    count that suits 500-byte events buffers 8 KB ones by the hundred megabyte. The
    queue keeps a moving average of the value sizes delivered to it (several partitions
    share one queue), and its maxsize is ``limit`` bytes' worth of them, between
    :data:`PREFETCH_FLOOR` and ``most`` (the count setting; 0 for none). A full queue makes the
    delivery wait (``_wait_to_put``), which stops the fetch loop: what waits beyond that
    stays in Kafka. asyncio's Queue reads ``_maxsize`` on every ``full()`` and ``put``.
    """
    size = 0
    for message in messages:
        value = message.value
        size += len(value) if value else 0
    mean = size / len(messages) + 1
    average: float = getattr(queue, "cdpulse_value_bytes", mean)
    average = queue.cdpulse_value_bytes = 0.8 * average + 0.2 * mean
    fits = int(limit / average)
    queue._maxsize = max(PREFETCH_FLOOR, min(most, fits) if most > 0 else fits)


def passes_bytes_through(app: AppT, channel: Any) -> bool:
    """Whether ``channel.decode`` would hand the message's own key and value to the event.

    True for a faust Topic of ``bytes`` keys and values under the ``raw`` codec (or
    none): faust's decode then costs ~2 µs per message to return what it was given.
    Anything customised (schema, serializer registry, codec, decode) says False.
    """
    schema = getattr(channel, "schema", None)
    if (
        not isinstance(channel, faust.Topic)
        or type(channel)._compile_decode is not faust.Topic._compile_decode
        or type(schema) is not faust.Schema
        or type(app.serializers) is not Registry
        or not isinstance(codecs.codecs.get("raw"), codecs.raw)
    ):
        return False
    key_codec = schema.key_serializer or app.serializers.key_serializer
    value_codec = schema.value_serializer or app.serializers.value_serializer
    return (
        schema.key_type is bytes
        and schema.value_type is bytes
        and key_codec in _RAW
        and value_codec in _RAW
    )


async def _wait_to_put(queue: Any, event: EventT[Any]) -> bool:
    """Wait for room in a full channel queue; False when a rebalance cleared it.

    A rebalance clears every channel queue, and mode's ``clear`` cancels the futures
    of the puts waiting on it: the put raises ``CancelledError`` although nothing
    cancelled this task. The rest of the batch is then not delivered (its messages
    stay unacked, read again from the committed offsets) and the fetch loop goes on;
    letting the error out would end faust's fetcher for good.
    """
    try:
        await queue.put(event)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this task itself is being cancelled
        return False
    return True


def _puts_in_bulk(queue: Any) -> bool:
    """Whether ``queue`` is mode's flow-control queue on asyncio's own storage, which
    :func:`_put_all` fills as its ``put_nowait_enhanced`` would, event by event."""
    return (
        isinstance(queue, FlowControlQueue)
        and type(queue)._put is asyncio.Queue._put
        and type(queue).put_nowait_enhanced is FlowControlQueue.put_nowait_enhanced
    )


def _put_all(
    queue: Any, events: list[EventT[Any]], high: Callable[[], None], drop: Callable[[], None]
) -> None:
    """``queue.put_nowait_enhanced(event, ...)`` for each of ``events``, in one go (the
    queue has room for them all).

    mode checks the pressure before each put: high once the queue holds
    ``pressure_high_size`` events, then the partition stops fetching until ``drop`` is
    called back. Before the last put the queue is at its fullest, so that one check
    says it for the lot. asyncio's ``put_nowait``: append, count the unfinished task,
    wake a getter per event. Measured on the bench's worker: per-event puts were ~1 %
    of its CPU.
    """
    pending = queue._pending_pressure_drop_callbacks
    if drop not in pending and queue.qsize() + len(events) - 1 >= queue.pressure_high_size:
        pending.add(drop)
        queue.on_pressure_high()
        high()
    queue._queue.extend(events)
    queue._unfinished_tasks += len(events)
    queue._finished.clear()
    getters = queue._getters
    for _ in events:
        if not getters:
            break
        queue._wakeup_next(getters)


class PartitionDelivery:
    """Delivers the messages of one partition to the channels subscribed to it.

    Invariant: a message's refcount is raised by the number of channels before any of
    them can see it, and every channel that cannot decode it acks it, so the final
    ack happens exactly once per message.
    """

    def __init__(self, conductor: Conductor, tp: TP, channels: Any) -> None:
        app = conductor.app
        self.tp = tp
        self.channels = channels
        self.consumer = cast("BatchConsumer", app.consumer)
        self.acquire_flow_control = app.flow_control.acquire
        self.wait_until_producer_ebb = app.producer.buffer.wait_until_ebb
        self.on_topic_buffer_full = app.sensors.on_topic_buffer_full
        self.monitor = app.monitor
        self.create_event = app.create_event
        self.prefetch_bytes: int | None = getattr(app, "prefetch_bytes", None)
        self.prefetch = int(app.conf.stream_buffer_maxsize)
        # Bound once: the queue keeps the drop callback in a set, per message.
        self._on_pressure_high = self.on_pressure_high
        self._on_pressure_drop = self.on_pressure_drop

    async def __call__(self, message: Message) -> None:
        """faust's per-message callback, for code that still calls it."""
        await self.deliver((message,))

    async def deliver(self, messages: Sequence[Message]) -> bool:
        """Decode each message once per key/value type and queue it on every channel.

        False when a rebalance cleared a queue midway: the rest was not delivered.
        """
        await self.acquire_flow_control()
        await self.wait_until_producer_ebb()
        channels = self.channels
        if not channels:
            # Nothing subscribes: the message is handled by being read, or the
            # partition's commits would stop here.
            self.consumer.ack_messages(messages)
            return True
        # The livelock detector reads it; faust's monitor would set it per event.
        self.monitor.stream_inbound_time[self.tp] = monotonic()
        if self.prefetch_bytes and messages:
            for channel in channels:
                bound_by_bytes(channel.queue, messages, self.prefetch_bytes, self.prefetch)
        if len(channels) == 1:
            channel = next(iter(channels))
            if passes_bytes_through(channel.app, channel):
                return await self._deliver_as_is(messages, channel)
            for message in messages:
                message.refcount += 1
                if not await self._deliver_one(message, channel):
                    return False
        else:
            for message in messages:
                if not await self._deliver_many(message):
                    return False
        return True

    async def _deliver_as_is(self, messages: Sequence[Message], channel: Any) -> bool:
        """Queue an event per message without decoding: see :func:`passes_bytes_through`.

        As many as the queue has room for go in at once (:func:`_put_all`); a full queue
        takes one at a time, each waiting for room (backpressure).
        """
        create_event = self.create_event
        queue = channel.queue
        bulk = _puts_in_bulk(queue)
        put = queue.put_nowait_enhanced
        high, drop = self._on_pressure_high, self._on_pressure_drop
        at, count = 0, len(messages)
        while at < count:
            room = count - at if queue.maxsize <= 0 else queue.maxsize - queue.qsize()
            if room <= 0:
                message = messages[at]
                message.refcount += 1
                event = create_event(message.key, message.value, message.headers or None, message)
                self.on_topic_buffer_full(self.tp)
                if not await _wait_to_put(queue, event):
                    return False
                at += 1
                continue
            events = []
            for message in messages[at : at + room]:
                message.refcount += 1
                events.append(
                    create_event(message.key, message.value, message.headers or None, message)
                )
            if bulk:
                _put_all(queue, events, high, drop)
            else:
                for event in events:
                    put(event, on_pressure_high=high, on_pressure_drop=drop)
            at += len(events)
        return True

    async def _deliver_one(self, message: Message, channel: Any) -> bool:
        try:
            event = await channel.decode(message, propagate=True)
        except KeyDecodeError as exc:
            message.ack(self.consumer)
            await channel.on_key_decode_error(exc, message)
            return True
        except ValueDecodeError as exc:
            message.ack(self.consumer)
            await channel.on_value_decode_error(exc, message)
            return True
        return await self._put(channel, event)

    async def _deliver_many(self, message: Message) -> bool:
        channels = self.channels
        message.refcount += len(channels)
        decoded: dict[tuple[Any, Any], EventT[Any]] = {}
        delivered: set[Any] = set()
        try:
            for channel in channels:
                types = (channel.key_type, channel.value_type)
                event = decoded.get(types)
                if event is None:
                    event = decoded[types] = await channel.decode(message, propagate=True)
                if not await self._put(channel, event):
                    return False
                delivered.add(channel)
        except (KeyDecodeError, ValueDecodeError) as exc:
            remaining = [c for c in channels if c not in delivered]
            message.ack(self.consumer, n=len(remaining))
            for channel in remaining:
                if isinstance(exc, KeyDecodeError):
                    await channel.on_key_decode_error(exc, message)
                else:
                    await channel.on_value_decode_error(exc, message)
        return True

    async def _put(self, channel: Any, event: EventT[Any]) -> bool:
        """Queue ``event``; False when the queue was cleared while waiting for room."""
        queue = channel.queue
        if queue.full():
            # Backpressure: wait for the stream, on this channel's queue only.
            self.on_topic_buffer_full(self.tp)
            return await _wait_to_put(queue, event)
        queue.put_nowait_enhanced(
            event,
            on_pressure_high=self._on_pressure_high,
            on_pressure_drop=self._on_pressure_drop,
        )
        return True

    def on_pressure_high(self) -> None:
        """The queue is nearly full: stop fetching this partition for now."""
        self.on_topic_buffer_full(self.tp)
        self.consumer.on_buffer_full(self.tp)

    def on_pressure_drop(self) -> None:
        self.consumer.on_buffer_drop(self.tp)


class BatchConductor(Conductor):
    """faust's conductor with a per-partition, per-batch delivery."""

    def _build_handler(self, tp: TP, channels: Any) -> PartitionDelivery:
        return PartitionDelivery(self, tp, channels)

    async def deliver(self, tp: TP, messages: Sequence[Message]) -> bool:
        """Hand ``messages``, all of partition ``tp`` and in offset order, to its streams.

        False when a rebalance interrupted it (see :meth:`PartitionDelivery.deliver`).
        """
        async with self._tp_to_callback_lock:
            handler = cast(PartitionDelivery, self._tp_to_callback[tp])
        return await handler.deliver(messages)
