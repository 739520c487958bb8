"""faust's aiokafka consumer, delivering and acking a fetched batch at a time.

faust's own fetch loop (``Consumer._drain_messages``) races every message against
``suspend_flow.wait()`` with ``Service.wait_first``: four tasks and three cancellations
per message, ~30 µs of the ~52 µs faust spends on one. :class:`BatchConsumer` races
each fetched batch against it instead, so a rebalance's suspend still interrupts
delivery at once, and hands the partitions' slices of the batch to the conductor a
few dozen messages per call, the partitions taking turns
(:mod:`cdpulse.adapters.kafka.conductor`).

Commits follow :class:`~cdpulse.adapters.kafka.offsets.PartitionOffsets`: a partition
commits one past its oldest delivered message whose final ack was not recorded. That
is stricter than faust's ``_new_offset``, which commits past a hole of one message and
past any hole while the partition has no committed offset (offset 0 reads as "none").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerMessage, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from cdpulse.adapters.kafka.coordination import CoordinationWatch
from cdpulse.adapters.kafka.coordination_repair import watch_coordination
from cdpulse.adapters.kafka.offsets import PartitionOffsets

if TYPE_CHECKING:
    from cdpulse.adapters.kafka.conductor import BatchConductor

log = logging.getLogger(__name__)

# A fetch with nothing returns after this long, so a stop is noticed.
FETCH_TIMEOUT = 1.0
# Messages of one partition delivered before the next partition's turn (``_deliver``).
INTERLEAVE = 64
# A commit not done by then gives up; the commit timer's next one tries again.
COMMIT_TIMEOUT = 15.0

Batch = list[tuple[TP, list["BatchMessage"]]]


class BatchMessage(ConsumerMessage):
    """A consumer message that knows whether its final ack was recorded.

    ``acked`` cannot say it: the worker marks a batch whose handling raised as acked
    without recording the ack, so that nothing commits past it.
    """

    __slots__ = ("committable",)
    # Set by ``BatchConsumer._to_message``: an ``__init__`` forwarding faust's 16
    # arguments would double the cost of building a message.
    committable: bool


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread; its aiokafka consumer asks the broker for fuller fetches.

    faust builds the consumer with aiokafka's ``fetch_min_bytes=1``: a consumer that
    keeps up (a learner, a worker at half its capacity) then fetches again the moment
    one record arrives, and the broker answers thousands of tiny fetches a second.
    With the app's ``fetch_min_bytes`` and ``fetch_max_wait`` the broker holds a fetch
    until that much arrived or that long passed: measured on the bench, the broker's
    CPU per 1,000 events fell from ~0.035 to ~0.015 s (the roles' settings: 64 KB, 20 ms).

    With the app's ``coordinator_check_seconds`` and ``coordinator_stall_seconds`` it also
    watches aiokafka's group coordination in this thread's loop and repairs it where
    aiokafka would not (:mod:`cdpulse.adapters.kafka.coordination_repair`).
    """

    #: What the coordination watch decided so far (None: not watched).
    coordination: CoordinationWatch | None = None

    async def on_start(self) -> None:
        await super().on_start()
        app: Any = self.app  # a BatchApp (BatchTransport is only built by one)
        check, stall = app.coordinator_check_seconds, app.coordinator_stall_seconds
        if check is None or stall is None:
            return
        self.coordination = CoordinationWatch(stall)
        # A task of this thread's loop, where aiokafka's tasks run: a check every few
        # seconds, nothing per message.
        self.add_future(
            watch_coordination(
                lambda: self._consumer, self.coordination, check, lambda: self.should_stop
            )
        )

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's commit, given up after ``COMMIT_TIMEOUT`` seconds.

        aiokafka's commit waits for the group coordinator without end, in one of the two
        workers of this thread's method queue. After a broker restart a commit waited
        minutes (a chaos test); had a second call waited too (``seek_to_committed``
        during a rebalance waits for the coordinator as well), no ``getmany`` could run
        and the worker stalled with the broker back. Timed out in the thread's own loop,
        the wait ends and frees its worker; the offsets are committed by a later tick.
        """
        return cast(bool, await self.call_thread(self._commit_within, offsets))

    async def _commit_within(self, offsets: Mapping[TP, int]) -> bool:
        watch = cast("BatchConsumer", self.consumer).commits
        try:
            done = bool(await asyncio.wait_for(self._commit(offsets), COMMIT_TIMEOUT))
        except TimeoutError:
            log.warning(
                "offset commit not done in %.0f s (group coordinator unreachable?); "
                "the coordinator is looked up again and the next commit tries again",
                COMMIT_TIMEOUT,
            )
            # A coordinator whose requests stopped answering is looked up again by the
            # next commit. (A chaos run that saw every commit time out for good had no
            # coordinator at all: its lookup waited on aiokafka's ended metadata
            # synchronizer, which the coordination watch restarts.)
            coordinator = getattr(self._consumer, "_coordinator", None)
            if coordinator is not None:
                coordinator.coordinator_dead()
            done = False
        watch.record(done)
        return done

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app: Any = self.app  # a BatchApp (BatchTransport is only built by one)
        if app.fetch_min_bytes is not None:
            # Read by the Fetcher aiokafka builds in ``start()``, which runs after this.
            consumer._fetch_min_bytes = app.fetch_min_bytes
            consumer._fetch_max_wait_ms = int(app.fetch_max_wait * 1000)
        return consumer


class CommitWatch:
    """Whether offset commits get through: readiness reads it (``/readyz``).

    Processing is exact without commits (idempotent writes), so a worker whose commits
    fail keeps working; but every failed minute is a minute more to read again after a
    crash, and a coordinator that never comes back needs an operator: not ready.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failing_since: float | None = None
        self.failures = 0

    def record(self, done: bool) -> None:
        """A commit ended: ``done`` when the broker confirmed it."""
        if done:
            self.failing_since, self.failures = None, 0
            return
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self.clock()

    def stalled(self, stall_seconds: float) -> str:
        """Why the process is not ready ("" when it is): commits failing that long."""
        if self.failing_since is None:
            return ""
        seconds = self.clock() - self.failing_since
        if seconds < stall_seconds:
            return ""
        return (
            f"offset commits failing for {seconds:.0f}s ({self.failures} attempts; "
            "group coordinator unreachable?)"
        )


class FetchWatch:
    """Whether the fetch loop comes round: readiness reads it (``/readyz``'s ``fetching``).

    A loop that works comes round at least every ``FETCH_TIMEOUT`` seconds (an empty fetch
    returns then), or as soon as the streams took what it fetched. One that has not for
    ``stall_seconds`` is stuck, and its partitions' lag grows while Kafka and Redis answer
    and no batch fails: flow suspended by a rebalance that never finished, a delivery
    waiting on a stream that takes nothing, or a loop that ended. Partitions paused that
    long (faust pauses them only while a rebalance recovers) are stuck the same way.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last = clock()  # starting counts as coming round: the first join has a while
        self.paused_since: float | None = None

    def came_round(self, paused: bool) -> None:
        """The loop went round once; ``paused``: some assigned partition is paused."""
        now = self.last = self.clock()
        if not paused:
            self.paused_since = None
        elif self.paused_since is None:
            self.paused_since = now

    def stalled(self, stall_seconds: float, suspended: bool) -> str:
        """Why the consumer is not fetching ("" when it is); ``suspended``: whether its
        flow is suspended now (by a rebalance)."""
        now = self.clock()
        idle = now - self.last
        if idle >= stall_seconds:
            where = (
                "flow suspended: a rebalance not finished?"
                if suspended
                else "waiting for the streams to take what it fetched, or ended"
            )
            return f"the fetch loop has not come round for {idle:.0f}s ({where})"
        paused = now - self.paused_since if self.paused_since is not None else 0.0
        if paused >= stall_seconds:
            return f"partitions paused for {paused:.0f}s (a rebalance not finished?)"
        return ""


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with per-batch flow control and ack bookkeeping.

    Must be paired with :class:`~cdpulse.adapters.kafka.stream.BatchStream` and
    :class:`~cdpulse.adapters.kafka.conductor.BatchConductor` (``faust_app`` does):
    faust's Cython stream iterator records acks in ``_acked_index`` behind the
    consumer's back, which this consumer does not read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._offsets: dict[TP, PartitionOffsets] = {}
        # Per partition, the offset the broker confirmed. faust's ``_committed_offset``
        # takes a commit's offsets whether it succeeded or not, and never offers them
        # again: a worker whose last commits failed (a broker restart) would leave its
        # final offsets uncommitted for good once no new message is acked.
        self._confirmed: dict[TP, int] = {}
        self.commits = CommitWatch()
        self.fetches = FetchWatch()

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # -- fetching ---------------------------------------------------------------------

    def _to_message(self, tp: TP, record: Any) -> BatchMessage:
        timestamp: int | None = record.timestamp
        message = BatchMessage(
            record.topic,
            record.partition,
            record.offset,
            timestamp / 1000.0 if timestamp is not None else cast(float, None),
            record.timestamp_type,
            record.headers,
            record.key,
            record.value,
            record.checksum,
            record.serialized_key_size,
            record.serialized_value_size,
            tp,
            generation_id=self.app.consumer_generation_id,
        )
        message.committable = False
        return message

    async def _drain_messages(self, fetcher: Any) -> None:
        """The Fetcher's loop: fetch a batch, deliver it unless flow is suspended.

        Unlike faust's, it never commits (faust commits every ``broker_commit_every``
        acks from here): commits are the commit timer's alone. A commit waits for the
        group coordinator, and after a broker restart that took 20 s to minutes (a
        chaos test caught one at 5): fetching waited with it, and the worker stalled
        though the broker was back. Processing needs no commit to be exact (idempotent
        writes); a late commit only means more redelivery after a crash.
        """
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        came_round, paused = self.fetches.came_round, self._paused_partitions
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                set_flag(CONSUMER_FETCHING)
                batch = await self._fetch()
                if batch and not self.should_stop:
                    await self._deliver_unless_suspended(batch)
                unset_flag(CONSUMER_FETCHING)
                came_round(bool(paused))
                # getmany can return at once for a long time: let the agents run.
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer while shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("the fetch loop failed; the consumer stops fetching")
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _fetch(self) -> Batch:
        """One ``getmany``, as messages per partition; empty while flow is suspended.

        The same checks as faust's ``getmany``, once per partition instead of per
        record: a suspended flow seeks back to the committed offsets, a new
        generation or a partition no longer active drops what was fetched.
        """
        records, active = await self._wait_next_records(FETCH_TIMEOUT)
        if not records or self.should_stop:
            return []
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seek to committed offsets while flow is suspended: %r", exc)
            return []
        app = self.app
        generation = app.consumer_generation_id
        track_end_offset = app.monitor.track_tp_end_offset
        buffered = self._buffered_partitions
        to_message = self._to_message
        batch: Batch = []
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            if app.consumer_generation_id != generation:
                return []
            track_end_offset(tp, self.highwater(tp))
            batch.append((tp, [to_message(tp, record) for record in tp_records]))
        return batch

    async def _deliver_unless_suspended(self, batch: Batch) -> None:
        """Deliver ``batch``, stopping at once when a rebalance suspends the flow.

        mode's ``wait_first`` would raise the ``CancelledError`` of a delivery that a
        cleared queue interrupted, as if this task were cancelled: the fetcher then
        ends for good (faust restarts it only under a supervisor, which it has not).
        """
        delivery = asyncio.ensure_future(self._deliver(batch))
        suspended = asyncio.ensure_future(self.suspend_flow.wait())
        try:
            # A stop cancels this task (the fetcher's), and the finally the delivery.
            await asyncio.wait((delivery, suspended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (delivery, suspended):
                if not future.done():
                    future.cancel()
        if delivery.done() and not delivery.cancelled():
            delivery.result()  # an error of the delivery is the loop's

    async def _deliver(self, batch: Batch) -> None:
        """Hand each partition's new messages to the conductor, oldest first, the
        partitions taking turns in slices of ``INTERLEAVE`` messages.

        A fetch catching up a backlog holds up to a megabyte of every partition: handed
        over one partition after the other, a stream would see one partition's days of
        events before another's first (events far more out of order than the profile
        rules allow, README: Limits). Taking turns keeps the partitions as even as
        faust's own delivery, which takes turns message by message.

        A message is in its partition's ledger before any stream can ack it. When a
        suspend cancels this midway, the undelivered rest stays in the ledger as a
        hole; the seek or revocation that follows every suspend clears it.
        """
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        deliver = cast("BatchConductor", self.app.topics).deliver
        slices: list[tuple[TP, Sequence[BatchMessage]]] = []
        for tp, fetched in batch:
            messages: Sequence[BatchMessage] = fetched
            last_read = read_offset[tp]
            if last_read is not None and messages[0].offset < last_read:
                # Behind the position a seek set (faust drops these too).
                messages = [m for m in messages if m.offset >= last_read]
            if messages and acks_enabled_for(tp.topic):
                messages = self._ledger(tp).deliver(messages)
            if messages:
                slices.append((tp, messages))
        start = 0
        while slices:
            for tp, messages in slices:
                turn = messages[start : start + INTERLEAVE]
                if not await deliver(tp, turn):
                    return  # a rebalance cleared the queues: the seek that follows reads on
                read_offset[tp] = turn[-1].offset
            start += INTERLEAVE
            slices = [(tp, messages) for tp, messages in slices if len(messages) > start]

    # -- acks and commits -------------------------------------------------------------

    def _ledger(self, tp: TP) -> PartitionOffsets:
        ledger = self._offsets.get(tp)
        if ledger is None:
            ledger = self._offsets[tp] = PartitionOffsets()
        return ledger

    def ack(self, message: Message) -> bool:
        """Record the final ack of ``message`` (its refcount reached zero)."""
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            recorded = self._record(message)
            if recorded:
                self._advance((message.tp,))
        notify(self._waiting_for_ack)
        return recorded

    def ack_messages(self, messages: Iterable[Message]) -> int:
        """Ack every message once, as ``Message.ack`` would; returns the final acks.

        One lock and one ledger advance per partition for a whole batch, instead of
        ``Stream.ack`` -> ``Message.ack`` -> ``Consumer.ack`` per message.
        """
        recorded = 0
        touched: set[TP] = set()
        with ack_lock:
            for message in messages:
                if message.acked:
                    continue
                refcount = message.refcount - 1
                if refcount > 0:
                    message.refcount = refcount
                    continue
                message.refcount = 0
                message.acked = True
                if self._record(message):
                    recorded += 1
                    touched.add(message.tp)
            self._advance(touched)
        notify(self._waiting_for_ack)
        return recorded

    def _record(self, message: Message) -> bool:
        """Mark a final ack committable; False for a topic without acks."""
        if not self.app.topics.acks_enabled_for(message.topic):
            return False
        if isinstance(message, BatchMessage):
            message.committable = True
        if message.tracked and self._unacked_messages:
            self._unacked_messages.discard(message)
        return True

    def _advance(self, tps: Iterable[TP]) -> None:
        offsets = self._offsets
        for tp in tps:
            ledger = offsets.get(tp)
            if ledger is not None:
                ledger.advance()

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        return (
            tp
            for tp, ledger in self._offsets.items()
            if ledger.ready is not None and (topics is None or tp in topics or tp.topic in topics)
        )

    def _new_offset(self, tp: TP) -> int | None:
        ledger = self._offsets.get(tp)
        return ledger.ready if ledger is not None else None

    def _should_commit(self, tp: TP, offset: int) -> bool:
        confirmed = self._confirmed.get(tp)
        return confirmed is None or offset > confirmed

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        committed = bool(await super()._commit(offsets))
        if committed:
            self._confirmed.update(offsets)
        return committed

    # -- rebalances and seeks -----------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._offsets.pop(tp, None)
            self._confirmed.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        # Everything not committed is read again from the committed offsets.
        self._offsets.clear()
        await super().perform_seek()
        # faust just read them from the broker.
        self._confirmed = {
            tp: offset for tp, offset in self._committed_offset.items() if offset is not None
        }

    async def seek(self, partition: TP, offset: int) -> None:
        ledger = self._offsets.get(partition)
        if ledger is not None:
            ledger.rewind(offset)
        await super().seek(partition, offset)

    def pending(self) -> Mapping[TP, int]:
        """Delivered messages per partition whose ack is not recorded yet (diagnostics)."""
        return {tp: len(ledger) for tp, ledger in self._offsets.items() if len(ledger)}
