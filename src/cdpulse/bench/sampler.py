"""Samples taken while a phase runs: progress, lag, CPU and memory of every process involved.

One ``Sample`` every half second (or second): the workers' group's committed messages,
the messages each worker has processed (``cdpulse_batch_size_sum``) and its batches
(read from its /metrics every ``SCRAPE_EVERY`` seconds only, as the Prometheus of
``deploy/prometheus`` does: rendering ~70 KB of metrics twice a second cost the worker
~5 % of its CPU, which no deployment pays), the
learner's lag on each of its topics, the CPU seconds, run-queue wait and RSS of every
role process and of the Kafka broker (found by its listening port), Redis' CPU
(``INFO cpu``), and the machine's busy CPU ticks.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cdpulse.bench import redis_memory
from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import CLOCK_TICKS, machine_busy_ticks, sample_process
from cdpulse.bench.roles import RoleProcess
from cdpulse.bench.stats import interpolate, window_rate
from cdpulse.connections import BlockingRedis

ROLES = ("worker", "learner", "api", "kafka", "redis")
SCRAPE_EVERY = 5.0  # seconds between two reads of a worker's /metrics


def role_of(name: str) -> str:
    """``worker1`` -> ``worker``: processes are named by role and index.

    >>> role_of("worker1"), role_of("learner")
    ('worker', 'learner')
    """
    return re.sub(r"\d+$", "", name)


@dataclass(frozen=True, slots=True)
class Sample:
    """The state of a phase at ``t`` seconds after it began."""

    t: float
    committed: int  # the workers' group, over the phase's input partitions
    processed: list[int]  # per worker
    batches: list[int]  # per worker
    redis_seconds: list[float]  # per worker: inside Redis round trips (cdpulse_redis_seconds)
    cpu_seconds: dict[str, float]  # per process: worker0.., learner, api, kafka, bench
    runqueue_seconds: dict[str, float]  # per process: runnable, waiting for a CPU
    rss_bytes: dict[str, int]  # per process
    learner_lag: dict[str, int]  # per learner topic: messages not committed yet
    machine_busy: int  # CPU ticks, all cores
    machine_total: int
    redis_cpu_seconds: float
    # Whether the workers' /metrics were read for this sample; if not, ``processed``,
    # ``batches`` and ``redis_seconds`` repeat the last read and figures skip them.
    scraped: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Watched:
    """What a sampler watches besides the processes: groups, topics, Redis, Kafka's pid."""

    offsets: Offsets
    group: str
    learner_group: str
    learner_topics: list[str]
    redis: BlockingRedis
    kafka_pid: int | None


class Sampler:
    """Takes ``Sample``s of a phase's processes, its groups, Redis and Kafka."""

    def __init__(self, processes: Mapping[str, RoleProcess], watched: Watched) -> None:
        self.processes = dict(processes)
        self.workers = [p for name, p in self.processes.items() if role_of(name) == "worker"]
        self.watched = watched
        # Helper processes (producer, load generators) by name -> pid: /proc only. Replaced,
        # never changed in place, so a sampling thread never sees it change under it.
        self.extra: dict[str, int] = {}
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self._scraped_at: float | None = None

    def pids(self) -> dict[str, int]:
        pids = {name: p.pid for name, p in self.processes.items()}
        pids.update(self.extra)
        if self.watched.kafka_pid is not None:
            pids["kafka"] = self.watched.kafka_pid
        pids["bench"] = os.getpid()
        return pids

    def take(self, ends: Mapping[Any, int] | None = None) -> Sample:
        """One sample; ``ends``: the input partitions' ends the committed count is over."""
        processed: list[int] = []
        batches: list[int] = []
        redis_wait: list[float] = []
        now = time.monotonic()
        last = self.samples[-1] if self.samples else None
        scraped = last is None or self._scraped_at is None or now - self._scraped_at >= SCRAPE_EVERY
        for i, worker in enumerate(self.workers):
            worker.check_alive()
            if not scraped and last is not None:
                processed.append(last.processed[i])
                batches.append(last.batches[i])
                redis_wait.append(last.redis_seconds[i])
                continue
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
        if scraped:
            self._scraped_at = now
        cpu: dict[str, float] = {}
        runqueue: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, pid in self.pids().items():
            # A process that just ended (a zombie has no memory lines) is left out.
            with contextlib.suppress(OSError, ValueError):
                usage = sample_process(pid)
                cpu[name], runqueue[name], rss[name] = (
                    usage.cpu_seconds,
                    usage.runqueue_seconds,
                    usage.rss_bytes,
                )
        w = self.watched
        busy, total = machine_busy_ticks()
        sample = Sample(
            t=round(time.monotonic() - self.started, 3),
            committed=w.offsets.committed(w.group, dict(ends)) if ends else 0,
            processed=processed,
            batches=batches,
            redis_seconds=redis_wait,
            cpu_seconds=cpu,
            runqueue_seconds=runqueue,
            rss_bytes=rss,
            learner_lag=w.offsets.lag(w.learner_group, w.learner_topics),
            machine_busy=busy,
            machine_total=total,
            redis_cpu_seconds=redis_memory.cpu_seconds(w.redis),
            scraped=scraped,
        )
        self.samples.append(sample)
        return sample


def cores_between(samples: Sequence[Sample], t0: float, t1: float) -> dict[str, float]:
    """Cores each process used between ``t0`` and ``t1`` (interpolated), and the split.

    Keys: ``machine``, every process by name, each role summed (``worker``), ``redis``,
    ``others`` (what the named processes do not explain: other people's work on a shared
    machine, and the kernel).
    """
    seconds = t1 - t0
    if seconds <= 0 or not samples:
        return {}

    def delta(series: list[tuple[float, float]]) -> float:
        return interpolate(series, t1) - interpolate(series, t0) if series else 0.0

    names = sorted({n for s in samples for n in s.cpu_seconds})
    cores: dict[str, float] = {
        "machine": delta([(s.t, float(s.machine_busy)) for s in samples]) / CLOCK_TICKS / seconds,
        "redis": delta([(s.t, s.redis_cpu_seconds) for s in samples]) / seconds,
    }
    for name in names:
        series = [(s.t, s.cpu_seconds[name]) for s in samples if name in s.cpu_seconds]
        cores[name] = delta(series) / seconds
    for role in ("worker",):
        members = [n for n in names if role_of(n) == role and n != role]
        if members:
            cores[role] = sum(cores[n] for n in members)
    explained = sum(v for k, v in cores.items() if k not in ("machine", "worker"))
    cores["others"] = cores["machine"] - explained
    return cores


def per_thousand(cores: Mapping[str, float], events_per_second: float) -> dict[str, float]:
    """CPU seconds per 1,000 events of each role, from cores used at a rate.

    >>> per_thousand({"worker": 0.5, "kafka": 0.1, "machine": 1.0}, 1000.0)
    {'worker': 0.5, 'kafka': 0.1}
    """
    if events_per_second <= 0:
        return {}
    return {r: cores[r] / events_per_second * 1000 for r in ROLES if r in cores}


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
    seconds = t1 - t0
    workers = len(samples[0].processed)

    def delta(series: list[tuple[float, float]]) -> float:
        return interpolate(series, t1) - interpolate(series, t0)

    cores = cores_between(samples, t0, t1)
    names = [f"worker{i}" for i in range(workers)]
    runqueue = [
        delta([(s.t, s.runqueue_seconds.get(n, 0.0)) for s in samples]) / seconds for n in names
    ]
    read = [s for s in samples if s.scraped]  # the workers' own figures, where read
    in_redis = [delta([(s.t, s.redis_seconds[i]) for s in read]) / seconds for i in range(workers)]
    processed = delta([(s.t, float(sum(s.processed))) for s in read])
    batches = delta([(s.t, float(sum(s.batches))) for s in read])
    busy = delta([(s.t, float(s.machine_busy)) for s in samples])
    ticks = delta([(s.t, float(s.machine_total)) for s in samples])
    out.update(
        {
            "window_seconds": [round(t0, 3), round(t1, 3)],
            "events_per_second": rate,
            "events_per_second_per_worker": rate / workers if workers else None,
            "processed_per_second": processed / seconds,
            "mean_batch": processed / batches if batches else None,
            "cores": cores,
            "cpu_seconds_per_1000": per_thousand(cores, rate),
            "worker_cpu_seconds_per_1000": [cores.get(n, 0.0) / rate * 1000 for n in names],
            "worker_cpu_utilisation": [cores.get(n, 0.0) for n in names],
            # Where the rest of each worker's time went: held up waiting for a CPU, or
            # awaiting Redis round trips (the rest: Kafka, faust's own waits, idle).
            "worker_runqueue_share": runqueue,
            "worker_redis_share": in_redis,
            "machine_busy_share": busy / ticks if ticks else None,
            "rss_bytes_max": {
                n: max(s.rss_bytes.get(n, 0) for s in samples) for n in samples[-1].rss_bytes
            },
        }
    )
    return out


def lag_timeline(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """The learner's total lag over time: ``[{"t": ..., "lag": ...}]``."""
    return [{"t": s.t, "lag": sum(s.learner_lag.values())} for s in samples]
