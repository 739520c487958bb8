"""The faust App cdpulse runs on: faust with the batch consumer path, on uvloop.

Plug it in where ``faust.App(...)`` is built; every faust option still applies::

    from cdpulse.adapters.kafka import faust_app

    app = faust_app(settings.app_id, broker=..., stream_wait_empty=False, ...)

Agents, timers, web views, producers, tables and commits are faust's. What changes is
the consumer's path from a fetched batch to an agent's ``take_events`` batch and back
to the commit (see :mod:`cdpulse.adapters.kafka.consumer`), and, with
``per_message_sensors=False`` (the default), faust's per-message sensor calls: its
Monitor's message and event counters stay at zero. Commit, rebalance and
topic-buffer sensors still run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT, Message

from cdpulse.adapters.kafka.conductor import BatchConductor
from cdpulse.adapters.kafka.connection import report_resets_as_kafka_errors
from cdpulse.adapters.kafka.consumer import BatchConsumer
from cdpulse.adapters.kafka.stream import BatchStream

log = logging.getLogger(__name__)


class BatchTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the batch consumer and conductor."""

    Consumer = BatchConsumer
    Conductor = BatchConductor


class BatchApp(faust.App):
    """A faust App consuming through :class:`BatchTransport`.

    Its broker URLs must be ``kafka://`` (aiokafka); its ``Stream`` is
    :class:`BatchStream`, which the consumer's ack bookkeeping relies on.
    """

    #: Whether streams call faust's per-message sensors (its Monitor, statsd, ...).
    per_message_sensors: bool = False
    #: Bytes of message values a channel's queue holds at most (None: faust's count only).
    prefetch_bytes: int | None = None
    #: Bytes a fetch waits for at the broker, at most ``fetch_max_wait`` seconds (None:
    #: faust's, one byte and 1.5 s).
    fetch_min_bytes: int | None = None
    fetch_max_wait: float = 1.5
    #: Seconds between checks of aiokafka's group coordination, and without a coordinator
    #: before the broker is asked whether one exists (None: not watched; see
    #: ``coordination_repair``).
    coordinator_check_seconds: float | None = None
    coordinator_stall_seconds: float | None = None

    def __init__(
        self,
        id: str,
        *,
        per_message_sensors: bool = False,
        prefetch_bytes: int | None = None,
        fetch_min_bytes: int | None = None,
        fetch_max_wait: float = 1.5,
        coordinator_check_seconds: float | None = None,
        coordinator_stall_seconds: float | None = None,
        **options: Any,
    ) -> None:
        stream = options.setdefault("Stream", BatchStream)
        if not (isinstance(stream, type) and issubclass(stream, BatchStream)):
            raise ValueError(
                f"faust app {id!r}: Stream={stream!r} does not derive from BatchStream, "
                "whose acks the batch consumer relies on; subclass BatchStream instead"
            )
        super().__init__(id, **options)
        self.per_message_sensors = per_message_sensors
        self.prefetch_bytes = prefetch_bytes
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait = fetch_max_wait
        self.coordinator_check_seconds = coordinator_check_seconds
        self.coordinator_stall_seconds = coordinator_stall_seconds
        self._event_type: Any = None

    def _new_transport(self) -> Any:
        urls = self.conf.broker_consumer
        schemes = {url.scheme for url in urls}
        if schemes != {"kafka"}:
            raise ValueError(
                f"faust app {self.conf.id!r}: broker {[str(u) for u in urls]} uses "
                f"{sorted(schemes)}; the batch consumer needs kafka:// (aiokafka) URLs"
            )
        return BatchTransport(urls, self)

    def create_event(self, key: Any, value: Any, headers: Any, message: Message) -> EventT[Any]:
        # faust reads ``conf.Event`` per message; a setting costs ~1 µs to read.
        event_type = self._event_type
        if event_type is None:
            event_type = self._event_type = self.conf.Event
        return event_type(self, key, value, headers, message)  # type: ignore[no-any-return]


def use_uvloop() -> bool:
    """Make uvloop the event loop of every loop created from now on; False if missing.

    Call before the faust Worker starts: it creates its loop, and the consumer thread
    its own, after this. A loop already running keeps its implementation. aiokafka's
    connections are taught uvloop's error for a reset connection at the same time
    (:mod:`cdpulse.adapters.kafka.connection`).
    """
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed: running on asyncio's default event loop")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report_resets_as_kafka_errors()
    return True


def faust_app(
    id: str,
    *,
    uvloop: bool = True,
    per_message_sensors: bool = False,
    prefetch_bytes: int | None = None,
    fetch_min_bytes: int | None = None,
    fetch_max_wait: float = 1.5,
    coordinator_check_seconds: float | None = None,
    coordinator_stall_seconds: float | None = None,
    **options: Any,
) -> BatchApp:
    """A :class:`BatchApp` with faust ``options``; ``uvloop`` installs it first.

    ``prefetch_bytes`` bounds each stream's queue by the bytes of its messages' values
    as well as by faust's ``stream_buffer_maxsize`` count; ``fetch_min_bytes`` and
    ``fetch_max_wait`` are the consumer's (aiokafka's) fetch thresholds. With both
    ``coordinator_*_seconds`` the consumer's group coordination is watched and repaired.
    """
    if uvloop:
        use_uvloop()
    return BatchApp(
        id,
        per_message_sensors=per_message_sensors,
        prefetch_bytes=prefetch_bytes,
        fetch_min_bytes=fetch_min_bytes,
        fetch_max_wait=fetch_max_wait,
        coordinator_check_seconds=coordinator_check_seconds,
        coordinator_stall_seconds=coordinator_stall_seconds,
        **options,
    )
