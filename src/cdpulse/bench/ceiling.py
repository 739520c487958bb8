"""The ceilings the engine is measured against, each run in a process of its own.

    python -m cdpulse.bench.ceiling bare|minimal --bootstrap B --topics T1,T2 --expected N
        [--redis-url URL --prefix P --group G --batch 500] --out FILE

* ``bare``: aiokafka (the client faust consumes with) reads the run's messages from the
  start of every partition and does ``json.loads`` on each, nothing else. The engine's
  rate as a share of this says what everything above the Kafka client costs.
* ``minimal``: the hand-written minimal-profile pipeline. confluent-kafka batches of
  ``--batch`` messages in a consumer group, orjson, and per batch one pipelined round
  trip of one Lua update per event (count, first and last seen, revenue, and the
  partition's last applied offset, so a redelivered message changes nothing: the
  exactness the engine keeps, at its smallest), then an offset commit. What a profile
  update costs when nothing else is done: the engine's rate over this one is what every
  per-event feature and faust cost together.

Both are measured as the engine is: events/s and CPU (every thread of the process) over
the window in which progress went from 10% to 90% of the messages, so start-up and the
tail stay out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdpulse.bench.stats import interpolate, window_rate

WINDOW = (0.1, 0.9)

# Timestamps are compared as strings: the contract's ISO-8601 UTC form with milliseconds
# sorts as it reads, so Lua needs no date parsing.
MINIMAL_PROFILE_LUA = """
local key = KEYS[1]
local applied = redis.call('HGET', key, ARGV[3])
if applied and tonumber(applied) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', key, ARGV[3], ARGV[4])
redis.call('HINCRBY', key, 'count', 1)
local first = redis.call('HGET', key, 'first_seen')
if not first or ARGV[1] < first then
  redis.call('HSET', key, 'first_seen', ARGV[1])
end
local last = redis.call('HGET', key, 'last_seen')
if not last or ARGV[1] > last then
  redis.call('HSET', key, 'last_seen', ARGV[1])
end
if ARGV[2] ~= '0' then
  redis.call('HINCRBYFLOAT', key, 'revenue', ARGV[2])
end
return 1
"""


class Progress:
    """(wall seconds, messages done, CPU seconds) after each batch, from the first one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = 0
        self.batches = 0
        self.points: list[tuple[float, float, float]] = []
        self._wall = time.perf_counter
        self._cpu = time.process_time

    def add(self, size: int) -> bool:
        """Count a batch; True once every expected message is done."""
        if not self.points:
            self.points.append((self._wall(), 0.0, self._cpu()))
        self.done += size
        self.batches += 1
        self.points.append((self._wall(), float(self.done), self._cpu()))
        return self.done >= self.expected


def summarize_progress(
    points: list[tuple[float, float, float]], total: int, batches: int
) -> dict[str, Any]:
    """Events/s and CPU seconds per 1,000 events over the 10-90% window of ``total``.

    >>> found = summarize_progress([(0, 0, 0), (1, 50, 0.5), (2, 100, 1.0)], 100, 2)
    >>> found["events_per_second"], found["cpu_seconds_per_1000"]
    (50.0, 10.0)
    """
    if not points:
        return {"events": 0}
    t0 = points[0][0]
    done = [(t - t0, d) for t, d, _ in points]
    cpu = [(t - t0, c) for t, _, c in points]
    out: dict[str, Any] = {
        "events": int(points[-1][1]),
        "seconds": points[-1][0] - t0,
        "mean_batch": points[-1][1] / batches if batches else None,
    }
    window = window_rate(done, total, *WINDOW)
    if window is None:
        return out
    rate, start, end = window
    used = interpolate(cpu, end) - interpolate(cpu, start)
    out.update(
        {
            "events_per_second": rate,
            "window_seconds": [round(start, 3), round(end, 3)],
            "cpu_seconds_per_1000": used / (rate * (end - start)) * 1000,
            "cpu_utilisation": used / (end - start),
        }
    )
    return out


async def _bare(bootstrap: str, topics: list[str], progress: Progress) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="cdpulse-bench-bare",
    )
    await consumer.start()
    try:
        assigned = [
            TopicPartition(topic, int(p)) for topic, p in (t.rsplit(":", 1) for t in topics)
        ]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        loads = json.loads
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            size = 0
            for records in batches.values():
                for record in records:
                    loads(record.value)
                size += len(records)
            if size and progress.add(size):
                return
    finally:
        await consumer.stop()


def run_bare(bootstrap: str, topics: list[str], progress: Progress) -> None:
    asyncio.run(_bare(bootstrap, topics, progress))


def run_minimal(
    bootstrap: str,
    topics: list[str],
    progress: Progress,
    redis_url: str,
    prefix: str,
    group: str,
    batch: int,
) -> None:
    import orjson
    from confluent_kafka import Consumer

    from cdpulse.connections import blocking_redis

    # A Redis Cluster too (redis+cluster://): each key's script runs on its slot's master
    # (SCRIPT LOAD goes to every master).
    client = blocking_redis(redis_url)
    sha = client.script_load(MINIMAL_PROFILE_LUA)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.subscribe(topics)
    loads = orjson.loads
    try:
        while True:
            messages = consumer.consume(num_messages=batch, timeout=0.1)
            if not messages:
                continue
            pipe = client.pipeline(transaction=False)
            for message in messages:
                value, key = message.value(), message.key()
                if message.error() is not None or value is None or key is None:
                    continue
                event = loads(value)
                properties = event.get("properties") or {}
                revenue = properties.get("revenue", 0) if event["type"] == "order_completed" else 0
                pipe.evalsha(
                    sha,
                    1,
                    f"{prefix}:{{{key.decode()}}}:mini",
                    event["timestamp"],
                    revenue,
                    f"o:{message.topic()}:{message.partition()}",
                    message.offset() or 0,
                )
            pipe.execute()
            consumer.commit(asynchronous=True)
            if progress.add(len(messages)):
                return
    finally:
        consumer.close()
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.ceiling")
    parser.add_argument("kind", choices=("bare", "minimal"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument(
        "--topics", required=True, help="comma-separated; bare: topic:partition each"
    )
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="bench-minimal")
    parser.add_argument("--group", default="cdpulse-bench-minimal")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    topics = [t for t in args.topics.split(",") if t]
    progress = Progress(args.expected)
    gc.freeze()  # the imports' objects: as the engine's roles do after start-up
    run: Callable[[], None]
    if args.kind == "bare":
        run = lambda: run_bare(args.bootstrap, topics, progress)  # noqa: E731
    else:
        run = lambda: run_minimal(  # noqa: E731
            args.bootstrap, topics, progress, args.redis_url, args.prefix, args.group, args.batch
        )
    run()
    found = summarize_progress(progress.points, args.expected, progress.batches)
    found["cpu_seconds_total"] = time.process_time()  # start-up included: the machine's split
    args.out.write_text(json.dumps({"kind": args.kind, "batch": args.batch, **found}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
