"""The batch consumer path on a real broker: every message to the end, and commits that
never pass a batch whose handling raised, which the next worker then reads again.

Worker A's agent raises on the batch holding one poisoned message (faust restarts the
agent, which goes on with later batches); worker B, in the same group, starts where A
committed. Poisoning offset 0 checks the case faust's own bookkeeping gets wrong: a
partition with no committed offset yet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import KAFKA_PORT, ROOT, wait_until

BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
PARTITIONS = 2
PER_PARTITION = 3000


def make_topic(name: str) -> None:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)], timeout_ms=15000)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    for i in range(PER_PARTITION * PARTITIONS):
        producer.send(name, value=f"message {i}".encode(), partition=i % PARTITIONS)
    producer.flush()
    producer.close()


def committed(group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


class Agent:
    """One ``tests.integration.batch_agent`` worker process and the batches it handled."""

    def __init__(
        self, tmp: Path, name: str, topic: str, group: str, poison: str = "", pause: float = 0
    ) -> None:
        self.handled = tmp / f"{name}.handled"
        self.poisoned = tmp / f"{name}.poisoned"
        self.log = tmp / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "BATCH_AGENT_BOOTSTRAP": BOOTSTRAP,
            "BATCH_AGENT_TOPIC": topic,
            "BATCH_AGENT_GROUP": group,
            "BATCH_AGENT_HANDLED": str(self.handled),
            "BATCH_AGENT_DATADIR": str(tmp / f"{name}.data"),
            "BATCH_AGENT_POISONED": str(self.poisoned),
            "BATCH_AGENT_POISON": poison,
            "BATCH_AGENT_PAUSE": str(pause),
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.batch_agent"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def offsets(self) -> list[tuple[int, int]]:
        """(partition, offset) of every message handled, in the order handled."""
        if not self.handled.exists():
            return []
        with self.handled.open() as lines:
            return [(p, o) for line in lines for p, o in json.loads(line)]

    def poisoned_batch(self) -> list[tuple[int, int]]:
        return [(p, o) for p, o in json.loads(self.poisoned.read_text())]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.mark.parametrize("poison_offset", [0, 1500])
def test_a_raised_batch_is_never_committed_and_is_read_again(
    stack: None, tmp_path: Path, poison_offset: int
) -> None:
    topic = group = f"batch-{uuid.uuid4().hex[:10]}"
    make_topic(topic)
    total = PER_PARTITION * PARTITIONS

    a = Agent(tmp_path, "a", topic, group, poison=f"0:{poison_offset}")
    try:
        wait_until(a.poisoned.exists, 90, "worker A to reach the poisoned batch")
        failed = a.poisoned_batch()
        # faust restarts the crashed agent, which handles every later batch.
        wait_until(lambda: len(a.offsets()) == total - len(failed), 90, "A to handle the rest")
        # The partitions take turns in a fetched batch, so the poisoned batch may hold
        # messages of both: each partition commits up to its first failed message (no
        # commit at all when that is its offset 0), the others to their ends.
        expected = {}
        for partition in range(PARTITIONS):
            first_failed = min((o for p, o in failed if p == partition), default=PER_PARTITION)
            if first_failed:
                expected[partition] = first_failed
        wait_until(lambda: committed(group, topic) == expected, 30, f"A to commit {expected}")
    except AssertionError:
        raise AssertionError(f"worker A log tail:\n{a.tail()}") from None
    finally:
        a.stop()
    handled_a = a.offsets()
    assert len(set(handled_a)) == len(handled_a), "A handled a message twice"
    assert not set(handled_a) & set(failed)
    # Its shutdown commit stops at the hole too.
    assert committed(group, topic) == expected

    b = Agent(tmp_path, "b", topic, group)
    try:
        ends = {0: PER_PARTITION, 1: PER_PARTITION}
        wait_until(lambda: committed(group, topic) == ends, 90, "worker B to commit the ends")
    except AssertionError:
        raise AssertionError(f"worker B log tail:\n{b.tail()}") from None
    finally:
        b.stop()
    handled_b = b.offsets()
    # B starts at A's commits, so it reads the failed batch again, then each message of
    # a partition once and in order to the end.
    for partition in range(PARTITIONS):
        mine = [o for p, o in handled_b if p == partition]
        assert mine == list(range(expected.get(partition, 0), PER_PARTITION)), partition
    everything = {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    assert set(handled_a) | set(handled_b) == everything


def test_a_rebalance_loses_nothing(stack: None, tmp_path: Path) -> None:
    topic = group = f"batch-{uuid.uuid4().hex[:10]}"
    make_topic(topic)
    ends = {p: PER_PARTITION for p in range(PARTITIONS)}
    # Slow batches (0.5 s each, ~10 s for A alone) so B joins while A is mid-stream.
    a = Agent(tmp_path, "a", topic, group, pause=0.5)
    b: Agent | None = None
    try:
        wait_until(lambda: len(a.offsets()) > 0, 90, "worker A to handle a batch")
        # B joins mid-stream: the group rebalances; A re-reads from its commits.
        b = Agent(tmp_path, "b", topic, group, pause=0.5)
        wait_until(lambda: committed(group, topic) == ends, 120, "the group to commit the ends")
    except AssertionError:
        tails = f"A:\n{a.tail()}\nB:\n{b.tail() if b else ''}"
        raise AssertionError(f"worker log tails:\n{tails}") from None
    finally:
        a.stop()
        if b is not None:
            b.stop()
    handled = a.offsets() + (b.offsets() if b else [])
    everything = {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    assert set(handled) == everything
