"""Where a worker's time goes: the batch processor's stages, timed in-process on real Redis.

The same messages the workers consume are cut into batches of the worker's batch size
and handed to a ``BatchProcessor`` over the real ``RedisProfileStore`` (its own key
prefix), without faust or Kafka. Each stage is timed where it is called:

* ``decode``: bytes to a validated event (json + pydantic), dead letters, metrics;
* one entry per store call (``link``, ``resolve``, ``load``, ``save``, ``retire``,
  ``advance_watermark``), of which the pipelined round trips themselves
  (``cdpulse_redis_seconds``) and the MessagePack encode/decode of profiles are
  reported apart, and Redis' own CPU from ``INFO commandstats``;
* ``rules and bookkeeping``: the rest of ``process`` (apply, merge, grouping, metrics).

The difference between this rate and a worker's is what faust and the Kafka client
cost per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis as sync_redis
from prometheus_client import REGISTRY

from cdpulse.bench.workload import Record, topic_of
from cdpulse.contract.topics import Topics
from cdpulse.ingest.batch import BatchProcessor
from cdpulse.ingest.message import Message
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.settings import Settings
from cdpulse.store import redis as redis_store
from cdpulse.store.base import SaveStatus, Stored, Write
from cdpulse.store.redis import RedisProfileStore

STORE_CALLS = ("link", "resolve", "load", "save", "retire", "advance_watermark")


class _Clock:
    """Wall seconds, CPU seconds (this process) and calls per stage name.

    CPU time is what a loaded machine does not inflate; wall time also holds the
    waits for Redis.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started
            self.cpu[name] += time.process_time() - cpu
            self.calls[name] += 1


class TimedStore:
    """A RedisProfileStore whose every call is timed."""

    def __init__(self, inner: RedisProfileStore, clock: _Clock) -> None:
        self.inner = inner
        self.clock = clock

    async def load(self, ids: list[str]) -> dict[str, Stored]:
        with self.clock.timing("load"):
            return await self.inner.load(ids)

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        with self.clock.timing("resolve"):
            return await self.inner.resolve(ids)

    async def link(self, anonymous_id: str, customer_id: str) -> str:
        with self.clock.timing("link"):
            return await self.inner.link(anonymous_id, customer_id)

    async def save(self, writes: list[Write]) -> dict[str, SaveStatus]:
        with self.clock.timing("save"):
            return await self.inner.save(writes)

    async def retire(self, ids: list[str]) -> None:
        with self.clock.timing("retire"):
            await self.inner.retire(ids)

    async def advance_watermark(self, marks: dict[str, int]) -> None:
        with self.clock.timing("advance_watermark"):
            await self.inner.advance_watermark(marks)

    async def watermark(self) -> int:
        return await self.inner.watermark()

    async def get(self, profile_id: str) -> Profile | None:
        return await self.inner.get(profile_id)

    async def count(self) -> int:
        return await self.inner.count()


class TimedProcessor(BatchProcessor):
    """A BatchProcessor that times its decode stage."""

    clock: _Clock

    def decode(self, messages: list[Message], now: Any) -> Any:
        with self.clock.timing("decode"):
            return super().decode(messages, now)


@contextlib.contextmanager
def _timed_msgpack(clock: _Clock) -> Iterator[None]:
    """Time the store's MessagePack encode and decode of profiles (patched for the run).

    The store module's own names are swapped, so nothing outside this process changes.
    """
    names = vars(redis_store)
    encode: Callable[[Profile], bytes] = names["encode"]
    decode: Callable[[bytes], Profile] = names["decode"]

    def timed_encode(profile: Profile) -> bytes:
        with clock.timing("msgpack encode"):
            return encode(profile)

    def timed_decode(blob: bytes) -> Profile:
        with clock.timing("msgpack decode"):
            return decode(blob)

    names["encode"], names["decode"] = timed_encode, timed_decode
    try:
        yield
    finally:
        names["encode"], names["decode"] = encode, decode


def messages_of(records: Sequence[Record], topics: Topics, partitions: int) -> list[Message]:
    """The records as a consumer would see them: a partition by key, offsets in order."""
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out: list[Message] = []
    now = time.time()
    for record in records:
        topic = topic_of(topics, record.stream)
        partition = zlib.crc32(record.key) % partitions
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] = offset + 1
        out.append(Message(topic, partition, offset, record.key, record.value, now))
    return out


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds per stage over ``events`` events, and the whole in-process rate."""

    events: int
    batches: int
    seconds: float
    cpu_seconds: float
    stages: dict[str, float]  # stage -> wall seconds, adding up to ``seconds``
    stages_cpu: dict[str, float]  # stage -> CPU seconds, adding up to ``cpu_seconds``
    detail: dict[str, float]  # parts of stages (round trips, msgpack, Redis CPU) -> seconds
    calls: dict[str, int]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def per_event_us(self) -> dict[str, float]:
        """Wall microseconds per event, per stage and per detail."""
        return {k: v / self.events * 1e6 for k, v in {**self.stages, **self.detail}.items()}

    def per_event_cpu_us(self) -> dict[str, float]:
        """CPU microseconds per event, per stage."""
        return {k: v / self.events * 1e6 for k, v in self.stages_cpu.items()}


def _redis_seconds_sum(op: str) -> float:
    return REGISTRY.get_sample_value("cdpulse_redis_seconds_sum", {"op": op}) or 0.0


def _commandstats_usec(client: sync_redis.Redis) -> dict[str, float]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name: float(value["usec"]) for name, value in stats.items()}


async def _time_stages(
    settings: Settings, messages: list[Message], batch_size: int
) -> tuple[float, float, _Clock, int]:
    clock = _Clock()
    inner = RedisProfileStore.from_url(settings.redis_url, settings.redis_prefix)
    store = TimedStore(inner, clock)
    processor = TimedProcessor(
        store,  # type: ignore[arg-type]
        Rules.from_settings(settings),
        max_bytes=settings.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
    )
    processor.clock = clock
    batches = 0
    try:
        started, cpu = time.perf_counter(), time.process_time()
        with _timed_msgpack(clock):
            for i in range(0, len(messages), batch_size):
                await processor.process(messages[i : i + batch_size])
                batches += 1
        return time.perf_counter() - started, time.process_time() - cpu, clock, batches
    finally:
        await inner.close()


def time_stages(settings: Settings, messages: list[Message], batch_size: int) -> StageTimes:
    """Run ``messages`` through a timed BatchProcessor in batches of ``batch_size``."""
    client = sync_redis.Redis.from_url(settings.redis_url)
    try:
        usec_before = _commandstats_usec(client)
        round_trips_before = {op: _redis_seconds_sum(op) for op in ("load", "save", "retire")}
        total, cpu, clock, batches = asyncio.run(_time_stages(settings, messages, batch_size))
        usec_after = _commandstats_usec(client)
    finally:
        client.close()
    names = ("decode", *STORE_CALLS)
    stages = {name: clock.seconds.get(name, 0.0) for name in names}
    stages["rules and bookkeeping"] = total - sum(stages.values())
    stages_cpu = {name: clock.cpu.get(name, 0.0) for name in names}
    stages_cpu["rules and bookkeeping"] = cpu - sum(stages_cpu.values())
    detail = {
        f"{op}: pipelined round trip": _redis_seconds_sum(op) - before
        for op, before in round_trips_before.items()
    }
    detail["msgpack decode (in load)"] = clock.seconds.get("msgpack decode", 0.0)
    detail["msgpack encode (in save)"] = clock.seconds.get("msgpack encode", 0.0)
    detail["redis server CPU (all commands)"] = (
        sum(usec_after.values()) - sum(usec_before.values())
    ) / 1e6
    return StageTimes(
        len(messages), batches, total, cpu, stages, stages_cpu, detail, dict(clock.calls)
    )
