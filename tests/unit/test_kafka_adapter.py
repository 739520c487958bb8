"""The batch consumer path's pure parts: what a partition may commit, acks, decode choice.

No broker: the consumer is built but never started, and messages are handed to its
ledger the way its fetch loop does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from mode.utils.queues import ThrowableQueue

from cdpulse.adapters.kafka import BatchApp, BatchConsumer, BatchStream, faust_app
from cdpulse.adapters.kafka.conductor import (
    PREFETCH_FLOOR,
    _wait_to_put,
    bound_by_bytes,
    passes_bytes_through,
)
from cdpulse.adapters.kafka.consumer import BatchMessage, FetchWatch
from cdpulse.adapters.kafka.offsets import Delivered, PartitionOffsets

# --- PartitionOffsets ----------------------------------------------------------------------


def oracle(delivered: list[Delivered]) -> int | None:
    """One past the last message of the committable run from the first: a plain scan."""
    ready = None
    for message in delivered:
        if not message.committable:
            break
        ready = message.offset + 1
    return ready


@given(
    st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=60),
    st.integers(0, 10),
)
def test_ready_is_one_past_the_committable_run(steps: list[tuple[int, bool]], split: int) -> None:
    offset, delivered = 0, []
    for gap, committable in steps:
        offset += gap  # gaps stand for compacted offsets and transaction markers
        delivered.append(Delivered(offset, committable))
    ledger = PartitionOffsets()
    # Delivered and advanced in two rounds: the answer must not depend on when.
    ledger.deliver(delivered[:split])
    ledger.advance()
    ledger.deliver(delivered[split:])
    ledger.advance()
    assert ledger.ready == oracle(delivered)


def test_a_hole_holds_back_every_later_commit_until_it_is_handled() -> None:
    ledger = PartitionOffsets()
    messages = [Delivered(o) for o in range(10, 16)]
    ledger.deliver(messages)
    for m in messages[:2] + messages[3:]:
        m.committable = True
    assert ledger.advance() == 12
    assert ledger.advance() is None and ledger.ready == 12 and len(ledger) == 4
    messages[2].committable = True
    assert ledger.advance() == 16 and len(ledger) == 0


def test_the_first_message_of_a_partition_without_commits_is_no_exception() -> None:
    # faust's _new_offset skips its hole check while the committed offset is 0 or None.
    ledger = PartitionOffsets()
    first, second = Delivered(0), Delivered(1, committable=True)
    ledger.deliver([first, second])
    assert ledger.advance() is None


def test_a_fetch_overlapping_the_last_delivers_only_what_is_new() -> None:
    ledger = PartitionOffsets()
    ledger.deliver([Delivered(1), Delivered(2)])
    assert [m.offset for m in ledger.deliver([Delivered(1), Delivered(2), Delivered(3)])] == [3]
    assert len(ledger) == 3


def test_rewind_forgets_what_will_be_read_again() -> None:
    ledger = PartitionOffsets()
    messages = [Delivered(o, committable=True) for o in range(5)]
    ledger.deliver(messages)
    assert ledger.advance() == 5
    ledger.rewind(3)
    assert ledger.ready is None and ledger.last == 2
    again = [Delivered(3, committable=True), Delivered(4)]
    assert ledger.deliver(again) == again
    assert ledger.advance() == 4


# --- BatchConsumer acks, without a broker ---------------------------------------------------

TOPIC = "orders"
TP0 = TP(TOPIC, 0)


@pytest.fixture
def app() -> Iterator[BatchApp]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust_app(
        "unit-batch",
        broker="kafka://127.0.0.1:1",
        uvloop=False,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
    )
    app.topics.acking_topics.add(TOPIC)  # the conductor does this when it subscribes
    try:
        yield app
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def message(offset: int, refcount: int = 1) -> BatchMessage:
    m = BatchMessage(TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, TP0, generation_id=1)
    m.committable = False
    m.refcount = refcount
    return m


def deliver(consumer: BatchConsumer, messages: list[BatchMessage]) -> None:
    consumer._ledger(TP0).deliver(messages)


def consumer_of(app: BatchApp) -> BatchConsumer:
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    return consumer


def test_a_batch_ack_commits_up_to_the_batch(app: BatchApp) -> None:
    consumer = consumer_of(app)
    batch = [message(o) for o in range(100, 105)]
    deliver(consumer, batch)
    assert consumer.ack_messages(batch) == 5
    assert consumer._new_offset(TP0) == 105
    assert list(consumer._filter_tps_with_pending_acks()) == [TP0]
    # Acking again changes nothing.
    assert consumer.ack_messages(batch) == 0


def test_a_batch_marked_acked_by_hand_is_never_committed(app: BatchApp) -> None:
    # The worker's _committed_only_if_handled: handling raised, the batch is marked
    # acked without recording it, and no commit may pass it.
    consumer = consumer_of(app)
    failed, later = [message(o) for o in range(0, 3)], [message(o) for o in range(3, 6)]
    deliver(consumer, failed + later)
    for m in failed:
        m.acked = True
    consumer.ack_messages(failed)
    consumer.ack_messages(later)
    assert consumer._new_offset(TP0) is None
    assert consumer.pending() == {TP0: 6}


def test_a_message_shared_by_two_streams_commits_after_both_acked(app: BatchApp) -> None:
    consumer = consumer_of(app)
    shared = message(7, refcount=2)
    deliver(consumer, [shared])
    assert consumer.ack_messages([shared]) == 0
    assert consumer._new_offset(TP0) is None
    assert shared.ack(consumer)  # faust's per-message path reaches BatchConsumer.ack
    assert consumer._new_offset(TP0) == 8


def test_revocation_forgets_the_partition(app: BatchApp) -> None:
    consumer = consumer_of(app)
    deliver(consumer, [message(1)])
    consumer._offsets.pop(TP0)  # what on_partitions_revoked does before faust's own
    stale = message(1)
    consumer.ack_messages([stale])
    assert consumer._new_offset(TP0) is None


# --- the app ---------------------------------------------------------------------------------


def test_the_app_uses_the_batch_transport(app: BatchApp) -> None:
    assert isinstance(app.consumer, BatchConsumer)
    assert isinstance(app.stream([]), BatchStream)


def test_a_stream_class_that_is_not_a_batch_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="subclass BatchStream"):
        BatchApp("x", broker="kafka://127.0.0.1:1", Stream=faust.Stream)


def test_a_broker_other_than_kafka_is_refused() -> None:
    app = BatchApp("x", broker="memory://")
    with pytest.raises(ValueError, match="kafka://"):
        _ = app.transport


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"key_type": bytes, "value_type": bytes}, True),
        ({"key_type": bytes, "value_type": bytes, "value_serializer": "json"}, False),
        ({"key_type": str, "value_type": bytes}, False),
        ({"key_type": bytes, "value_type": None}, False),
    ],
)
def test_only_raw_bytes_topics_skip_decoding(
    app: BatchApp, options: dict[str, Any], expected: bool
) -> None:
    topic = app.topic("t", **options)
    assert passes_bytes_through(app, topic) is expected


# --- rebalances: a cleared queue interrupts a delivery, never the fetch loop -----------------


def channel_queue(app: BatchApp) -> ThrowableQueue[Any]:
    """A channel queue as faust builds them, with the flow running (puts wait otherwise)."""
    app.flow_control.resume()
    queue = app.FlowControlQueue(maxsize=1, clear_on_resume=True)
    assert isinstance(queue, ThrowableQueue)
    return queue


def test_a_put_waiting_on_a_queue_that_a_rebalance_clears_reports_it(app: BatchApp) -> None:
    async def scenario() -> tuple[bool, int]:
        queue = channel_queue(app)
        queue.put_nowait("first")
        waiting = asyncio.ensure_future(_wait_to_put(queue, cast(Any, "second")))
        await asyncio.sleep(0)
        queue.clear()  # what faust does to every channel queue on a rebalance
        return await waiting, queue.qsize()

    delivered, size = app.loop.run_until_complete(scenario())
    assert (delivered, size) == (False, 0)


def test_a_put_whose_own_task_is_cancelled_still_raises(app: BatchApp) -> None:
    async def scenario() -> None:
        queue = channel_queue(app)
        queue.put_nowait("first")
        waiting = asyncio.ensure_future(_wait_to_put(queue, cast(Any, "second")))
        await asyncio.sleep(0)
        waiting.cancel()
        await waiting

    with pytest.raises(asyncio.CancelledError):
        app.loop.run_until_complete(scenario())


def test_a_delivery_cancelled_under_the_fetch_loop_does_not_end_it(
    app: BatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = consumer_of(app)

    async def interrupted(batch: Any) -> None:
        raise asyncio.CancelledError  # what a put on a cleared queue raised before

    monkeypatch.setattr(consumer, "_deliver", interrupted)
    app.loop.run_until_complete(consumer._deliver_unless_suspended([]))


def test_a_suspended_flow_stops_a_delivery_blocked_on_a_full_queue(
    app: BatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = consumer_of(app)
    blocked = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck(batch: Any) -> None:
        blocked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario() -> None:
        consumer.resume_flow()
        delivering = asyncio.ensure_future(consumer._deliver_unless_suspended([]))
        await blocked.wait()
        consumer.suspend_flow.set()
        await delivering

    monkeypatch.setattr(consumer, "_deliver", stuck)
    app.loop.run_until_complete(scenario())
    assert cancelled == [True]


def test_an_error_of_the_delivery_reaches_the_fetch_loop(
    app: BatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = consumer_of(app)

    async def failing(batch: Any) -> None:
        raise RuntimeError("broken")

    monkeypatch.setattr(consumer, "_deliver", failing)
    with pytest.raises(RuntimeError, match="broken"):
        app.loop.run_until_complete(consumer._deliver_unless_suspended([]))


def _values(size: int, count: int) -> list[BatchMessage]:
    return [cast(BatchMessage, _Valued(b"x" * size)) for _ in range(count)]


class _Valued:
    def __init__(self, value: bytes) -> None:
        self.value = value


def test_a_queue_bounded_by_bytes_holds_fewer_large_messages() -> None:
    async def run() -> tuple[int, int, int]:
        queue: asyncio.Queue[Any] = asyncio.Queue(20_000)
        limit = 32 * 1024 * 1024
        for _ in range(50):  # the moving average settles on the sizes delivered
            bound_by_bytes(queue, _values(8 * 1024, 64), limit, 20_000)
        large = queue.maxsize
        for _ in range(50):
            bound_by_bytes(queue, _values(300, 64), limit, 20_000)
        small = queue.maxsize
        for _ in range(50):
            bound_by_bytes(queue, _values(1024 * 1024, 4), limit, 20_000)
        return large, small, queue.maxsize

    large, small, huge = asyncio.run(run())
    assert large == pytest.approx(32 * 1024 // 8, rel=0.01)  # ~32 MB of 8 KB values
    assert small == 20_000  # the count setting still caps small ones
    assert huge == PREFETCH_FLOOR  # a batch or two always waits, however large


def test_a_full_queue_bounded_by_bytes_makes_the_delivery_wait() -> None:
    async def run() -> bool:
        queue: asyncio.Queue[Any] = asyncio.Queue(20_000)
        for _ in range(PREFETCH_FLOOR):
            queue.put_nowait(None)
        bound_by_bytes(queue, _values(1024 * 1024, 1), 1024 * 1024, 20_000)
        put = asyncio.ensure_future(queue.put(None))
        await asyncio.sleep(0.01)
        waited = not put.done()
        queue.get_nowait()  # the stream takes one: room for the put
        await asyncio.wait_for(put, 1)
        return waited

    assert asyncio.run(run())


def test_the_consumer_asks_the_broker_for_fuller_fetches() -> None:
    options: dict[str, Any] = {"broker": "kafka://127.0.0.1:1", "uvloop": False}

    async def thresholds(app: BatchApp) -> tuple[int, int]:
        # aiokafka builds its consumer inside a running loop; it connects only in start().
        built = consumer_of(app)._thread._create_worker_consumer(app.transport)
        return built._fetch_min_bytes, built._fetch_max_wait_ms

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        tuned = faust_app("unit-fetch", fetch_min_bytes=65536, fetch_max_wait=0.02, **options)
        assert loop.run_until_complete(thresholds(tuned)) == (65536, 20)
        # Without them, faust's own: one byte, 1.5 s.
        plain = faust_app("unit-fetch-plain", **options)
        assert loop.run_until_complete(thresholds(plain)) == (1, 1500)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_a_commit_waiting_without_end_gives_up_and_reports_nothing_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiokafka's commit waits for the group coordinator for as long as it takes; the
    # consumer thread's own call must end so that its method-queue worker is free again.
    from cdpulse.adapters.kafka import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "COMMIT_TIMEOUT", 0.05)
    app = faust_app("unit-commit", broker="kafka://127.0.0.1:1", uvloop=False)
    thread = consumer_of(app)._thread
    calls: list[dict[TP, int]] = []

    async def coordinator_never_answers(offsets: dict[TP, int]) -> bool:
        calls.append(offsets)
        await asyncio.Event().wait()
        return True

    async def answers(offsets: dict[TP, int]) -> bool:
        calls.append(offsets)
        return True

    dead: list[bool] = []
    coordinator = SimpleNamespace(coordinator_dead=lambda: dead.append(True))
    monkeypatch.setattr(thread, "_consumer", SimpleNamespace(_coordinator=coordinator))
    now = [100.0]
    watch = consumer_of(app).commits
    watch.clock = lambda: now[0]
    loop = asyncio.new_event_loop()
    try:
        monkeypatch.setattr(thread, "_commit", coordinator_never_answers)
        # Bounded from outside too: without the commit's own timeout this fails, not hangs.
        within = asyncio.wait_for(thread._commit_within({TP0: 5}), 5)
        assert loop.run_until_complete(within) is False
        # The coordinator that never answered is looked up again by the next commit.
        assert dead == [True]
        now[0] += 59.0
        assert watch.stalled(60.0) == ""
        now[0] += 2.0
        assert "offset commits failing for 61s (1 attempts" in watch.stalled(60.0)
        monkeypatch.setattr(thread, "_commit", answers)
        assert loop.run_until_complete(thread._commit_within({TP0: 7})) is True
        assert watch.stalled(60.0) == ""  # ready again once a commit gets through
    finally:
        loop.close()
    assert calls == [{TP0: 5}, {TP0: 7}]


def test_offsets_of_a_failed_commit_are_committed_by_a_later_one(
    app: BatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # faust records a commit's offsets as committed even when the commit failed; after a
    # broker restart the worker's last offsets were then never committed.
    consumer = consumer_of(app)
    batch = [message(o) for o in range(100, 105)]
    deliver(consumer, batch)
    consumer.ack_messages(batch)
    answers = [False, True]
    sent: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return answers.pop(0)

    monkeypatch.setattr(consumer._thread, "commit", commit)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0})
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(consumer.commit()) is False
        assert loop.run_until_complete(consumer.commit()) is True
        # Nothing new acked since: nothing to commit.
        assert loop.run_until_complete(consumer.commit()) is False
    finally:
        loop.close()
    assert sent == [{TP0: 105}, {TP0: 105}]


# --- FetchWatch: readiness of a fetch loop that stopped coming round --------------------------


def test_a_fetch_loop_that_stops_coming_round_is_not_ready_and_says_where_it_waits() -> None:
    now = [0.0]
    watch = FetchWatch(clock=lambda: now[0])
    now[0] = 29.0
    assert watch.stalled(30.0, suspended=False) == ""  # a first join may take a while
    watch.came_round(paused=False)
    now[0] += 29.0
    assert watch.stalled(30.0, suspended=True) == ""
    now[0] += 2.0
    assert watch.stalled(30.0, suspended=True) == (
        "the fetch loop has not come round for 31s (flow suspended: a rebalance not finished?)"
    )
    assert "waiting for the streams to take what it fetched" in watch.stalled(30.0, False)
    watch.came_round(paused=False)
    assert watch.stalled(30.0, suspended=False) == ""  # ready again at the next round


def test_partitions_paused_for_long_are_not_ready_although_the_loop_comes_round() -> None:
    # faust pauses the assigned partitions only while a rebalance recovers: a loop that
    # fetches nothing from them for good still comes round every second.
    now = [0.0]
    watch = FetchWatch(clock=lambda: now[0])
    for _ in range(31):
        watch.came_round(paused=True)
        now[0] += 1.0
    assert watch.stalled(30.0, suspended=False) == (
        "partitions paused for 31s (a rebalance not finished?)"
    )
    watch.came_round(paused=False)
    assert watch.stalled(30.0, suspended=False) == ""


def test_the_fetch_loop_tells_its_watch_each_time_it_comes_round(
    app: BatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = consumer_of(app)
    now = [0.0]
    consumer.fetches.clock = lambda: now[0]
    rounds: list[float] = []
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def fetch() -> list[Any]:
        rounds.append(now[0])
        now[0] += 1.0
        if len(rounds) == 3:
            fetcher._stopped.set()
        return []

    monkeypatch.setattr(consumer, "_fetch", fetch)
    consumer._paused_partitions.add(TP0)
    app.loop.run_until_complete(consumer._drain_messages(fetcher))
    assert rounds == [0.0, 1.0, 2.0]
    assert consumer.fetches.last == 3.0
    assert consumer.fetches.paused_since == 1.0  # paused since the first round's end
