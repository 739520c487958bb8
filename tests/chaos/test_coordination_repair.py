"""aiokafka's group coordination wedged, then repaired by the watch, on a broker of the test's own.

A chaos run once saw a worker keep its partitions after a broker kill with no group
coordinator ever found again, no heartbeat, and every commit timing out: aiokafka's metadata
synchronizer had ended (uvloop's RuntimeError for a reset connection,
``adapters/kafka/connection.py``), so the coordinator lookup waited for a metadata update
that no task would ever resolve. Here the synchronizer is ended by hand (cancelled) and the
broker SIGKILLed and restarted: the wedge is shown first, then the watch of
``adapters/kafka/coordination_repair.py`` undoes it in the same consumer. A coordination
routine that ended is started again the same way, without a broker restart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from cdpulse.adapters.kafka.coordination import CoordinationWatch, Remedy
from cdpulse.adapters.kafka.coordination_repair import watch_coordination
from tests.chaos.services import PrivateKafka

CHECK_SECONDS = 1.0
COMMIT_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path_factory.mktemp("coordination") / "private-kafka")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def make_topic(bootstrap: str) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"coordination-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)], timeout_ms=15000)
    finally:
        admin.close()
    return topic


async def eventually(holds: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not holds():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def commits(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    """Whether a commit gets through in ``COMMIT_TIMEOUT`` s, as the worker's commit timer
    gives up."""
    try:
        await asyncio.wait_for(consumer.commit({tp: OffsetAndMetadata(0, "")}), COMMIT_TIMEOUT)
    except Exception:  # timed out, or failed: either way not committed
        return False
    return True


def joined(consumer: AIOKafkaConsumer) -> bool:
    return bool(consumer.assignment()) and consumer._coordinator.coordinator_id is not None


def run_on_uvloop(kafka: PrivateKafka, scenario: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        topic = await asyncio.to_thread(make_topic, kafka.bootstrap)
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=f"coordination-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        try:
            await eventually(lambda: joined(consumer), 60, "the consumer to join its group")
            await scenario(consumer, TopicPartition(topic, 0))
        finally:
            await consumer.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def repaired_by_the_watch(
    consumer: AIOKafkaConsumer, tp: TopicPartition, generation: int, remedy: Remedy
) -> None:
    """The watch repairs ``consumer`` with ``remedy`` alone: the group is rejoined (a new
    generation after ``generation``) and a commit goes through."""
    coordinator = consumer._coordinator
    watch = CoordinationWatch(stall_seconds=10 * CHECK_SECONDS)
    watching = asyncio.ensure_future(
        watch_coordination(lambda: consumer, watch, CHECK_SECONDS, lambda: False)
    )
    try:
        await eventually(
            lambda: coordinator.generation > generation and joined(consumer),
            60,
            "the coordinator to be found and the group rejoined",
        )
        assert not coordinator._coordination_task.done()
        assert await commits(consumer, tp)
        assert watch.repairs == {remedy: 1}
    finally:
        watching.cancel()


def test_an_ended_metadata_synchronizer_is_restarted_and_the_coordinator_found_again(
    kafka: PrivateKafka,
) -> None:
    async def scenario(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        generation = consumer._coordinator.generation
        assert await commits(consumer, tp)
        consumer._client._sync_task.cancel()
        await asyncio.to_thread(kafka.kill)
        # Down long enough for the heartbeat to fail and the lookup to wait on metadata.
        await asyncio.sleep(3)
        await asyncio.to_thread(kafka.start)

        # The wedge: the broker serves again, and the consumer has no coordinator.
        await asyncio.sleep(15)
        assert consumer._coordinator.coordinator_id is None
        assert not await commits(consumer, tp)
        # Found again, and the group rejoined: the broker dropped the silent member.
        await repaired_by_the_watch(consumer, tp, generation, Remedy.RESTART_METADATA)

    run_on_uvloop(kafka, scenario)


def test_an_ended_coordination_routine_is_restarted_and_the_group_rejoined(
    kafka: PrivateKafka,
) -> None:
    async def scenario(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        generation = consumer._coordinator.generation
        consumer._coordinator._coordination_task.cancel()
        await repaired_by_the_watch(consumer, tp, generation, Remedy.RESTART_COORDINATION)

    run_on_uvloop(kafka, scenario)
