"""The bench's producer, a process of its own: a file of records sent flat out or at a rate.

    python -m cdpulse.bench.produce --bootstrap HOST:PORT --records FILE [--rate R] --out FILE

It runs apart from the driver so that neither's work (the driver scrapes and samples
every second) delays the other's, and so its CPU is measured on its own. It uses
confluent-kafka (librdkafka): ~5 µs of CPU per message flat out (measured here,
librdkafka's threads included), so the load generator is not what limits a phase. Like
``cdpulse.producer.Producer``: acks=all, idempotent, 5 ms linger, and Java's murmur2
partitioner (librdkafka's default is CRC32), so a key lands on the partition every other
producer of the engine puts it on. Kafka's CreateTime of a message is stamped at
``produce()``, which is where produce → written latency starts.

At a rate, message ``i`` is due at ``start + i / rate``; whatever is due is sent, then the
producer sleeps until the next one is due, and at least a tick (2 ms). How far behind
schedule each burst started is kept (up to a tick by design), so a starved producer
shows in the result instead of quietly lowering the rate.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from cdpulse.bench.stats import percentiles

# (topic, key, value) as the producer sends them.
Row = tuple[str, bytes, bytes]
LATE = 0.005  # a burst this far behind schedule counts as late
TICK = 0.002  # the shortest pause between two bursts at a rate


def write_records(path: Path, rows: Sequence[Row]) -> None:
    """Save ``rows`` for a producer process (MessagePack: fast both ways, bytes kept)."""
    path.write_bytes(msgspec.msgpack.encode([list(r) for r in rows]))


def read_records(path: Path) -> list[Row]:
    return [(str(t), bytes(k), bytes(v)) for t, k, v in msgspec.msgpack.decode(path.read_bytes())]


def lag_summary(lags: Sequence[float], bursts: int) -> dict[str, Any]:
    """How far behind schedule the producer's bursts started (seconds), and how often late.

    >>> lag_summary([0.0, 0.001, 0.02], 3)["late"]
    1
    """
    if not lags:
        return {"bursts": bursts, "late": 0}
    return {
        "bursts": bursts,
        **percentiles(lags, (0.5, 0.99)),
        "max": max(lags),
        "late": sum(1 for lag in lags if lag > LATE),
    }


def produce(
    bootstrap: str, rows: Sequence[Row], rate: float, started_file: Path | None
) -> dict[str, Any]:
    """Send ``rows`` (``rate`` <= 0: as fast as the client takes them); returns what happened."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    failed: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None and len(failed) < 10:
            failed.append(str(error))

    def send(row: Row) -> None:
        topic, key, value = row
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                return
            except BufferError:  # librdkafka's queue is full: let it drain
                producer.poll(0.005)

    lags: list[float] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    if started_file is not None:
        started_file.write_text(str(time.time()))
    sent = 0
    if rate <= 0:
        for sent, row in enumerate(rows, start=1):
            send(row)
            if sent % 10_000 == 0:
                producer.poll(0)
    else:
        while sent < len(rows):
            now = time.perf_counter()
            lags.append(max(0.0, now - (started + sent / rate)))
            due = min(len(rows), int((now - started) * rate) + 1)
            while sent < due:
                send(rows[sent])
                sent += 1
            producer.poll(0)
            # At least a tick between bursts: waking for every message (every 133 µs at
            # 7,500/s) cost this process a fifth of a core, taken from the engine it
            # measures. A message waits at most a tick for its burst; its latency starts
            # at produce() (CreateTime) all the same.
            pause = max(TICK, started + sent / rate - time.perf_counter())
            time.sleep(pause)
    sending = time.perf_counter() - started
    left = producer.flush(120)
    return {
        "sent": sent,
        "rate": rate,
        "seconds": sending,
        "achieved_rate": sent / sending if sending > 0 else 0.0,
        "flushed_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "undelivered": left,
        "errors": failed,
        "schedule_lag": lag_summary(lags, len(lags)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.produce")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: flat out)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--started", type=Path, help="written when the first message goes out")
    args = parser.parse_args(argv)
    rows = read_records(args.records)
    # The rows are all this process holds: out of the collector's sight, so a full
    # collection never pauses the schedule.
    gc.collect()
    gc.freeze()
    result = produce(args.bootstrap, rows, args.rate, args.started)
    args.out.write_text(json.dumps(result))
    return 0 if not result["undelivered"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
