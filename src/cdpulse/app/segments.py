"""Segments on the stream: the worker's wiring of the tracker, its topic and its timers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from kafka.partitioner.default import murmur2
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cdpulse.ops import metrics
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.segments.definitions import SegmentBook, load_book
from cdpulse.segments.membership import Transition
from cdpulse.segments.sketches import RfmSketches
from cdpulse.segments.tracker import Batch, SegmentTracker
from cdpulse.settings import Settings
from cdpulse.store.models import RedisClvStore
from cdpulse.store.segments import RedisMembershipStore

log = logging.getLogger(__name__)


SWEEP_CHUNK = 500
RECOVER_EVERY_MS = 5_000  # a dead worker's leftovers wait 30 s anyway: no need to ask often


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default (Java-compatible murmur2) partitioner gives a key."""
    return int(murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


class SegmentStream:
    """What the profile agent calls per batch: evaluate (and stage), send, then commit.

    Besides the batch's changed profiles, each call sweeps one page of order summaries
    through the newest RFM sketches (``SegmentTracker.sweep_rfm``), for the customers
    whose transactions partition this worker owns. Sweeping inside the agent, not in a
    timer, serializes it with the batches, so a sweep never races the evaluation of the
    same customer; a pass starts whenever newer sketches arrive.
    """

    def __init__(
        self,
        book: SegmentBook,
        rules: Rules,
        store: RedisMembershipStore,
        topic: Any,
        owned: Callable[[], tuple[set[int], int]],
        watermark: Callable[[], Awaitable[int]],
    ) -> None:
        self.book = book
        self.store = store
        self.topic = topic
        self.owned = owned
        self.watermark = watermark
        self.tracker = SegmentTracker(book, rules, store, lambda: store.sketches)
        self.cursor = 0
        self.pass_version = 0  # sketches version of the pass under way or last finished
        self.passed = True
        self.recovered_at = 0

    async def evaluate(self, saved: list[Profile]) -> Batch:
        """The batch's transitions, staged (see ``segments.tracker``) and ready to send."""
        batch = await self.tracker.evaluate(saved)
        seen = {p.id for p in saved}
        swept = await self._sweep_page(exclude=seen)
        seen |= {t.customer_id for t in swept}
        batch.transitions += swept
        now = int(time.time() * 1000)  # wall clock: only to tell a dead worker's leftovers
        if now - self.recovered_at >= RECOVER_EVERY_MS:
            batch.transitions += await self.tracker.recover(now, exclude=seen)
            self.recovered_at = now
        await self.tracker.stage(batch.transitions, now)
        return batch

    async def _sweep_page(self, exclude: set[str]) -> list[Transition]:
        if not self.book.rfm or self.store.sketches is None:
            return []
        if self.passed:
            if self.store.sketches_version <= self.pass_version:
                return []
            self.pass_version, self.passed = self.store.sketches_version, False
        mine, partitions = self.owned()
        cursor, page = await self.store.summary_page(self.cursor, SWEEP_CHUNK)
        chunk = {
            c: s
            for c, s in page.items()
            if c not in exclude and partitions and partition_of(c, partitions) in mine
        }
        changes = await self.tracker.sweep_rfm(chunk, await self.watermark())
        self.cursor = cursor
        self.passed = cursor == 0
        return changes

    async def send(self, batch: Batch) -> list[Awaitable[Any]]:
        """Hand the transitions to the producer; the caller awaits their deliveries."""
        return [
            await self.topic.send(key=t.customer_id.encode(), value=t.to_json())
            for t in batch.transitions
        ]

    async def commit(self, batch: Batch) -> None:
        """The broker has the transitions: clear them from pending."""
        await self.tracker.clear(batch.transitions)
        for t in batch.transitions:
            metrics.SEGMENT_TRANSITIONS.labels(t.segment, "entered" if t.entered else "left").inc()
        for name in batch.errors:
            metrics.SEGMENT_ERRORS.labels(name).inc()


def attach_segments(
    app: faust.App,
    settings: Settings,
    client: Any,
    rules: Rules,
    clv: RedisClvStore,
    watermark: Callable[[], Awaitable[int]],
) -> SegmentStream:
    """Build the segment stream and register its timers (RFM rebuild, refresh, sizes)."""
    book = load_book(settings.segments_file)
    store = RedisMembershipStore(client, settings.redis_prefix)
    topic = app.topic(settings.topic_segments, key_type=bytes, value_type=bytes)

    def owned() -> tuple[set[int], int]:
        """This worker's transactions partitions, and how many the topic has."""
        try:
            assigned = app.consumer.assignment()
        except Exception:  # not started or rebalancing: sweep nothing this time
            return set(), 0
        mine = {tp.partition for tp in assigned if tp.topic == settings.topic_transactions}
        return mine, settings.topic_partitions

    stream = SegmentStream(book, rules, store, topic, owned, watermark)

    @app.timer(interval=settings.rfm_refresh_seconds)  # type: ignore[untyped-decorator]
    async def rebuild_rfm() -> None:
        """One worker per interval rebuilds the sketches from every customer's summary."""
        if not book.rfm:
            return
        try:
            if not await store.lock(max(1, int(settings.rfm_refresh_seconds))):
                return
            summaries = await clv.summaries()
            rows = [(s.last_order_at, s.orders, s.net_revenue) for s in summaries]
            sketches = await asyncio.to_thread(RfmSketches.build, rows)
            if sketches.customers and await store.publish_sketches(sketches):
                metrics.RFM_CUSTOMERS.set(sketches.customers)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()

    @app.timer(interval=min(2.0, settings.rfm_refresh_seconds))  # type: ignore[untyped-decorator]
    async def refresh_segments() -> None:
        """Newer sketches from other workers, and the size of every segment."""
        try:
            if await store.refresh_sketches() and store.sketches is not None:
                metrics.RFM_CUSTOMERS.set(store.sketches.customers)
            for name, size in (await store.sizes(list(book.names))).items():
                metrics.SEGMENT_SIZE.labels(name).set(size)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()

    return stream
