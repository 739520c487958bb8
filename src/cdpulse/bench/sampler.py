"""Samples taken while a phase runs: progress, CPU and memory of every process involved.

One ``Sample`` every half second: the group's committed messages, the messages each
worker has processed (``cdpulse_batch_size_sum``), each worker's CPU seconds and RSS,
the batches they took,
the machine's busy CPU ticks, Redis' CPU (``INFO cpu``) and the Kafka broker's CPU
(found by its listening port).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis as sync_redis

from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import (
    CLOCK_TICKS,
    machine_busy_ticks,
    pid_listening_on,
    sample_process,
)
from cdpulse.bench.stats import interpolate, window_rate
from cdpulse.bench.workers import WorkerProcess


@dataclass(frozen=True, slots=True)
class Sample:
    """The state of a phase at ``t`` seconds after it began."""

    t: float
    committed: int
    processed: list[int]  # per worker
    batches: list[int]  # per worker
    cpu_seconds: list[float]  # per worker
    runqueue_seconds: list[float]  # per worker: runnable, waiting for a CPU
    redis_seconds: list[float]  # per worker: inside Redis pipelines (cdpulse_redis_seconds)
    rss_bytes: list[int]  # per worker
    machine_busy: int  # CPU ticks, all cores
    machine_total: int
    redis_cpu_seconds: float
    kafka_cpu_seconds: float | None
    bench_cpu_seconds: float  # this process: the sampler, and nothing else while it runs

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Sampler:
    """Takes ``Sample``s of a set of workers, their group, Redis and Kafka."""

    def __init__(
        self,
        workers: Sequence[WorkerProcess],
        offsets: Offsets,
        group: str,
        redis_client: sync_redis.Redis,
        kafka_port: int,
    ) -> None:
        self.workers = list(workers)
        self.offsets = offsets
        self.group = group
        self.redis = redis_client
        self.kafka_pid = pid_listening_on(kafka_port)
        self.started = time.monotonic()
        self.samples: list[Sample] = []

    def take(self, ends: dict[Any, int]) -> Sample:
        processed: list[int] = []
        batches: list[int] = []
        cpu: list[float] = []
        runqueue: list[float] = []
        redis_wait: list[float] = []
        rss: list[int] = []
        for worker in self.workers:
            worker.check_alive()
            done = count = 0
            in_redis = 0.0
            with contextlib.suppress(urllib.error.URLError, OSError):
                scrape = worker.scrape()
                done = int(scrape.value("cdpulse_batch_size_sum"))
                count = int(scrape.value("cdpulse_batch_size_count"))
                in_redis = scrape.value("cdpulse_redis_seconds_sum")
            processed.append(done)
            batches.append(count)
            redis_wait.append(in_redis)
            usage = sample_process(worker.pid)
            cpu.append(usage.cpu_seconds)
            runqueue.append(usage.runqueue_seconds)
            rss.append(usage.rss_bytes)
        busy, total = machine_busy_ticks()
        info = self.redis.info("cpu")
        kafka_cpu = None
        if self.kafka_pid is not None:
            with contextlib.suppress(OSError):
                kafka_cpu = sample_process(self.kafka_pid).cpu_seconds
        sample = Sample(
            t=round(time.monotonic() - self.started, 3),
            committed=self.offsets.committed(self.group, ends),
            processed=processed,
            batches=batches,
            cpu_seconds=cpu,
            runqueue_seconds=runqueue,
            redis_seconds=redis_wait,
            rss_bytes=rss,
            machine_busy=busy,
            machine_total=total,
            redis_cpu_seconds=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            kafka_cpu_seconds=kafka_cpu,
            bench_cpu_seconds=sample_process(os.getpid()).cpu_seconds,
        )
        self.samples.append(sample)
        return sample


def summarize(samples: Sequence[Sample], total: int, start: float, end: float) -> dict[str, Any]:
    """Rates and costs while the committed count went from ``start`` to ``end`` of ``total``.

    CPU and machine figures are interpolated at the two ends of that window, so startup
    (imports, group join) and the drain at the end stay out of them.
    """
    committed = [(s.t, float(s.committed)) for s in samples]
    window = window_rate(committed, total, start, end)
    done_at = next((s.t for s in samples if s.committed >= total), None)
    first = next((s.t for s in samples if s.committed > 0), None)
    out: dict[str, Any] = {
        "events": total,
        "wall_seconds": done_at,
        "first_commit_seconds": first,
        "window": [start, end],
    }
    if window is None or not samples:
        return out
    rate, t0, t1 = window
    events = (end - start) * total
    workers = len(samples[0].cpu_seconds)

    def delta(series: list[tuple[float, float]]) -> float:
        return interpolate(series, t1) - interpolate(series, t0)

    cpu = [delta([(s.t, s.cpu_seconds[i]) for s in samples]) for i in range(workers)]
    runqueue = [delta([(s.t, s.runqueue_seconds[i]) for s in samples]) for i in range(workers)]
    in_redis = [delta([(s.t, s.redis_seconds[i]) for s in samples]) for i in range(workers)]
    processed = delta([(s.t, float(sum(s.processed))) for s in samples])
    batches = delta([(s.t, float(sum(s.batches))) for s in samples])
    busy = delta([(s.t, float(s.machine_busy)) for s in samples])
    ticks = delta([(s.t, float(s.machine_total)) for s in samples])
    redis_cpu = delta([(s.t, s.redis_cpu_seconds) for s in samples])
    kafka = [(s.t, s.kafka_cpu_seconds) for s in samples if s.kafka_cpu_seconds is not None]
    bench = delta([(s.t, s.bench_cpu_seconds) for s in samples])
    seconds = t1 - t0
    cores = {
        "machine": busy / CLOCK_TICKS / seconds,
        "workers": sum(cpu) / seconds,
        "redis": redis_cpu / seconds,
        "kafka": delta(kafka) / seconds if kafka else 0.0,
        "bench": bench / seconds,
    }
    cores["others"] = cores["machine"] - sum(v for k, v in cores.items() if k != "machine")
    out.update(
        {
            "window_seconds": [round(t0, 3), round(t1, 3)],
            "events_per_second": rate,
            "events_per_second_per_worker": rate / workers,
            "processed_per_second": processed / seconds,
            "mean_batch": processed / batches if batches else None,
            "cpu_seconds_per_1000": [c / events * 1000 for c in cpu],
            "worker_cpu_utilisation": [c / seconds for c in cpu],
            # Where the rest of each worker's time went: held up waiting for a CPU, or
            # awaiting Redis pipelines (the rest: Kafka, faust's own waits, idle).
            "worker_runqueue_share": [r / seconds for r in runqueue],
            "worker_redis_share": [r / seconds for r in in_redis],
            "machine_busy_share": busy / ticks if ticks else None,
            "cores": cores,
            "redis_cpu_seconds_per_1000": redis_cpu / events * 1000,
            "kafka_cpu_seconds_per_1000": delta(kafka) / events * 1000 if kafka else None,
            "rss_bytes_max": [max(s.rss_bytes[i] for s in samples) for i in range(workers)],
        }
    )
    return out
