"""What every process role shares: its faust app, its Redis client, and the retry policy.

cdpulse runs as three roles, each its own process and its own faust app id (consumer
group), because faust assumes every member of a group runs the same agents:

* ``worker``: the profile agent on the input topics (``app/worker.py``), one per few partitions;
* ``learner``: the learners on their one-partition topics and the periodic refits
  (``app/learner.py``);
* ``api``: HTTP reads, the collector, segments, experiments, rules (``app/api.py``), as
  many processes as the reads need.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar

import faust
from aiohttp import web
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from redis.exceptions import (
    ClusterError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cdpulse.adapters.kafka import faust_app as batch_faust_app
from cdpulse.connections import faust_credentials
from cdpulse.connections import redis_client as redis_client
from cdpulse.contract.partitions import partition_of as partition_of
from cdpulse.ops import metrics
from cdpulse.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["worker", "learner", "api"]
T = TypeVar("T")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
# What "the infrastructure is down" looks like: back off and retry, never skip.
INFRASTRUCTURE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    # A Redis Cluster failing over or moving slots (store/state.py SlotMoving included).
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    KafkaError,
    ProducerSendError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def faust_app(settings: Settings, role: Role) -> faust.App:
    """The faust app of one role: its own consumer group, web port and nothing else."""
    group = settings.app_id if role == "worker" else f"{settings.app_id}-{role}"
    port = {"worker": settings.worker_port, "learner": settings.learner_port}.get(
        role, settings.web_port
    )
    # faust, with the batch consumer path and uvloop (``adapters/kafka``): the framework
    # costs ~13 µs per message instead of ~50-100.
    return batch_faust_app(
        group,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=f"{settings.data_dir}/{group}",
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=port,
        web_bind=settings.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_application_options={"middlewares": [timed]},
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        broker_commit_interval=settings.commit_interval,
        consumer_auto_offset_reset=settings.offset_reset,
        producer_acks=-1,
        producer_max_batch_size=settings.produce_batch_bytes,
        producer_request_timeout=settings.produce_timeout_seconds,
        broker_credentials=faust_credentials(settings),
        # Shutdown and rebalance commit what is acked instead of waiting for every message
        # handed to a stream: a batch stuck retrying (Redis down) would hold them forever.
        # Safe because writes are idempotent: an unacked batch is redelivered and re-applied
        # as duplicates, which the per-key offsets refuse.
        stream_wait_empty=False,
        stream_buffer_maxsize=settings.prefetch,
        prefetch_bytes=settings.prefetch_bytes,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait=settings.fetch_max_wait,
        coordinator_check_seconds=settings.coordinator_check_seconds,
        coordinator_stall_seconds=settings.coordinator_stall_seconds,
    )


@web.middleware
async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every HTTP request's time, by the route's pattern (never the path: it holds ids)."""
    began = time.perf_counter()
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        route = request.match_info.route.resource
        pattern = route.canonical if route is not None else "unmatched"
        metrics.HTTP_SECONDS.labels(pattern, request.method).observe(time.perf_counter() - began)


def record_lag(app: faust.App, gauge: Any, positions: Iterable[tuple[str, int, int]]) -> None:
    """Set ``gauge`` per partition to the messages after the newest (topic, partition,
    offset) handled: the consumer's high water mark minus that offset minus one."""
    last: dict[tuple[str, int], int] = {}
    for topic, partition, offset in positions:
        last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
    for (topic, partition), offset in last.items():
        try:
            highwater = app.consumer.highwater(faust.types.TP(topic, partition))
        except Exception:  # lag is best-effort telemetry; never fail a batch over it
            continue
        if highwater is not None:
            gauge.labels(topic, str(partition)).set(max(0, highwater - offset - 1))


def settle_heap() -> None:
    """Collect, then move every object alive now out of the garbage collector's sight."""
    gc.collect()
    gc.freeze()


class Heap:
    """Keeps the garbage collector off the hot path of a role that batches.

    Reference counting frees almost everything a batch allocates; the cyclic collector
    exists for the rest (~12 objects per batch here), yet every full collection it runs
    traverses every live container: the profile cache and model snapshots, millions of
    them. Measured on a worker: 28 full collections of ~130 ms each in 150,000 events,
    29 % of its CPU. So whatever survives a batch is frozen (``gc.freeze``: a list
    splice, never traversed again, still freed by reference counting), and the cyclic
    garbage frozen with it is reclaimed by one full collection every ``sweep_seconds``.
    The youngest generation is collected after 20,000 net allocations instead of 700:
    a batch allocates far more than 700 objects that live until it ends, and each young
    collection would traverse them again (GC time in that run: 4.9 s -> 1.2 s frozen ->
    0.4 s with both).
    """

    YOUNG = 20_000

    def __init__(self, sweep_seconds: float) -> None:
        self.sweep_seconds = sweep_seconds
        self.swept = time.monotonic()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(self.YOUNG, middle, old)

    def settle(self) -> None:
        """After a batch: freeze what survived it; sweep when a sweep is due."""
        now = time.monotonic()
        if now - self.swept >= self.sweep_seconds:
            self.sweep()
        else:
            gc.freeze()

    def sweep(self) -> None:
        """Unfreeze, collect everything, freeze again (start-up, new snapshots, the timer)."""
        gc.unfreeze()
        settle_heap()
        self.swept = time.monotonic()


async def retrying(
    call: Callable[[], Awaitable[T]],
    stopping: Callable[[], bool] = lambda: False,
    on_failure: Callable[[BaseException], None] = lambda exc: None,
) -> T:
    """Run ``call``, backing off while it fails, until ``stopping()``: the one retry loop.

    It never gives up on its own: a batch that cannot be written stays unacked, and the
    stall shows in readiness (``on_failure``), the lag and the logs. Once its agent is
    stopping it raises ``CancelledError`` instead of waiting on, so SIGTERM is obeyed; the
    unacked batch is then redelivered to whoever owns the partition next.
    """
    delay = BACKOFF_FIRST
    while True:
        try:
            return await call()
        except INFRASTRUCTURE as exc:
            metrics.REDIS_ERRORS.inc() if _is_redis(exc) else metrics.KAFKA_ERRORS.inc()
            log.warning("%s unavailable (%s); retrying in %.1fs", _what(exc), exc, delay)
            on_failure(exc)
        except Exception as exc:
            # Input never raises here (decode and the stages quarantine it), so this is a
            # bug. Retrying keeps the batch unacked: the partition stalls visibly.
            metrics.BATCH_FAILURES.inc()
            log.exception("batch failed; retrying in %.1fs", delay)
            on_failure(exc)
        # Checked only after a failure: a healthy batch still finishes during shutdown.
        if stopping():
            log.warning("stopping: the batch stays unacked and will be redelivered")
            raise asyncio.CancelledError("stopping with the batch unacked")
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)


def _is_redis(exc: BaseException) -> bool:
    return isinstance(exc, RedisError) or type(exc).__module__.startswith("redis")


def _what(exc: BaseException) -> str:
    return "redis" if _is_redis(exc) else "kafka"
