"""What faust itself costs per message: a do-nothing ``take_events`` agent, timed.

    python -m cdpulse.bench.framework --bootstrap 127.0.0.1:9092 --messages 500000

Fills a topic once with the synthetic shop's events (~300-400 byte JSON), then runs
each variant in a fresh worker process of its own, ``--repeat`` times, interleaved:

- ``stock``: ``faust.App``, as shipped;
- ``batch``: ``cdpulse.adapters.kafka.faust_app`` on asyncio's event loop;
- ``batch+uvloop``: the same on uvloop (what the worker runs);
- ``aiokafka``: a bare ``getmany`` loop, the ceiling.

Each agent takes batches of ``--batch`` events within 0.05 s and drops them. Rates and
CPU are measured from the first batch to the last message, CPU as the whole worker
process's (every thread: the consumer thread too). The table shows the median and the
spread of the runs; the machine is shared, so trust CPU µs/message over msg/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VARIANTS = ("stock", "batch", "batch+uvloop", "aiokafka")
WITHIN = 0.05


@dataclass(frozen=True, slots=True)
class Run:
    """One variant's measurement."""

    variant: str
    messages: int  # counted between the first batch and the last message
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.messages * 1e6


class Stopwatch:
    """Wall and process CPU time from the first batch until ``expected`` messages."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = 0
        self.first = 0
        self.started = self.cpu_started = 0.0

    def batch(self, size: int) -> bool:
        """Count a batch; True once every expected message arrived."""
        if not self.seen:
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
            self.first = size
        self.seen += size
        return self.seen >= self.expected

    def run(self, variant: str) -> Run:
        return Run(
            variant,
            self.seen - self.first,
            time.perf_counter() - self.started,
            time.process_time() - self.cpu_started,
        )


def fill(bootstrap: str, topic: str, messages: int, partitions: int) -> None:
    """Create ``topic`` and send the shop's events until it holds ``messages``."""
    asyncio.run(_fill(bootstrap, topic, messages, partitions))


async def _fill(bootstrap: str, topic: str, messages: int, partitions: int) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from cdpulse.bench.workload import shop_workload

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        held = sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
    if held >= messages:
        return
    records = shop_workload(messages - held, max(1000, messages // 60), seed=0).records
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        pending = []
        for record in records:
            pending.append(await producer.send(topic, record.value, key=record.key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def run_faust(
    variant: str, bootstrap: str, topic: str, messages: int, batch: int, result: Path
) -> None:
    """Run a faust worker with a do-nothing agent until ``messages`` arrived.

    The agent writes the :class:`Run` to ``result`` and stops the worker, which exits
    the process (``execute_from_commandline`` ends in ``sys.exit``).
    """
    import faust
    from faust.worker import Worker

    from cdpulse.adapters.kafka import faust_app

    options: dict[str, Any] = dict(
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(result.parent / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
    )
    app_id = f"cdpulse-bench-{uuid.uuid4().hex[:8]}"
    if variant == "stock":
        app = faust.App(app_id, **options)
    else:
        app = faust_app(app_id, uvloop=variant == "batch+uvloop", **options)
    watch = Stopwatch(messages)

    @app.agent(app.topic(topic, key_type=bytes, value_type=bytes), concurrency=1)
    async def drop(stream: Any) -> None:
        async for events in stream.take_events(batch, within=WITHIN):
            if watch.batch(len(events)) and not result.exists():
                result.write_text(json.dumps(_fields(watch.run(variant))))
                os.kill(os.getpid(), signal.SIGTERM)

    Worker(app, loglevel="error", quiet=True).execute_from_commandline()


def run_aiokafka(bootstrap: str, topic: str, partitions: int, messages: int) -> Run:
    """The ceiling: aiokafka ``getmany`` from the start of every partition, nothing else."""

    async def consume() -> Run:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            watch = Stopwatch(messages)
            while True:
                fetched = await consumer.getmany(timeout_ms=1000)
                size = sum(len(records) for records in fetched.values())
                if size and watch.batch(size):
                    return watch.run("aiokafka")
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def measure(variant: str, args: argparse.Namespace) -> Run:
    """Run one variant in a fresh process; returns what it measured."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run.json"
        command = [
            sys.executable, "-m", "cdpulse.bench.framework", "--run", variant,
            "--result", str(out), "--bootstrap", args.bootstrap, "--topic", args.topic,
            "--messages", str(args.messages), "--batch", str(args.batch),
            "--partitions", str(args.partitions),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        if not out.exists():
            raise RuntimeError(f"{variant} wrote no result (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")  # fmt: skip
        return Run(**json.loads(out.read_text()))


def table(runs: list[Run]) -> str:
    """Median and range per variant, in the order of :data:`VARIANTS`."""
    lines = [f"{'variant':<14}{'runs':>5}{'msg/s median (min-max)':>30}"
             f"{'CPU µs/msg median (min-max)':>32}"]  # fmt: skip
    for variant in VARIANTS:
        mine = [r for r in runs if r.variant == variant]
        if not mine:
            continue
        rates, cpus = [r.rate for r in mine], [r.cpu_us for r in mine]
        rate = f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
        cpu = f"{statistics.median(cpus):.1f} ({min(cpus):.1f}-{max(cpus):.1f})"
        lines.append(f"{variant:<14}{len(mine):>5}{rate:>30}{cpu:>32}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.framework")
    parser.add_argument("--bootstrap", default=os.environ.get("CDPULSE_KAFKA_BOOTSTRAP",
                                                              "127.0.0.1:9092"))  # fmt: skip
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--topic", help="default: cdpulse-bench-framework-<messages>")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--run", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.topic = args.topic or f"cdpulse-bench-framework-{args.messages}"
    if args.run == "aiokafka":
        run = run_aiokafka(args.bootstrap, args.topic, args.partitions, args.messages)
        Path(args.result).write_text(json.dumps(_fields(run)))
        return 0
    if args.run:
        run_faust(args.run, args.bootstrap, args.topic, args.messages, args.batch,
                  Path(args.result))  # fmt: skip
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    fill(args.bootstrap, args.topic, args.messages, args.partitions)
    runs: list[Run] = []
    for round_ in range(1, args.repeat + 1):
        for variant in variants:
            run = measure(variant, args)
            runs.append(run)
            print(f"round {round_} {variant:<13} {run.rate:>9,.0f} msg/s "
                  f"{run.cpu_us:6.1f} µs/msg", flush=True)  # fmt: skip
    print(f"\n{args.messages:,} messages of topic {args.topic}, batches of {args.batch} "
          f"within {WITHIN} s:\n{table(runs)}")  # fmt: skip
    return 0


def _fields(run: Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in Run.__slots__}


if __name__ == "__main__":
    sys.exit(main())
