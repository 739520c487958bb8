"""One benchmark run, phase by phase, against real Kafka, Redis and ``cdpulse worker``\\s.

1. **workload**: the shop's first ``events + rate * (warmup + latency_seconds)`` events, serialised;
   the first ``events`` are produced to the run's own topics before any clock starts.
2. **ceiling**: a bare aiokafka consumer reads them back, ``json.loads`` only.
3. **throughput, 1 worker**: a fresh group and key prefix; sampled until the group's
   committed offsets reach the end. Then Redis bytes per profile.
4. **latency**: the same worker, fed the next events at a steady ``rate``;
   produce → profile written from the worker's ``cdpulse_ingest_to_written_seconds``.
5. **profile reads**: ``GET /v1/profiles/{id}`` at ``http_rate``, open loop, same worker.
6. **throughput, 2 workers** on the same messages (fresh group and prefix): the scaling.
7. **stages**: the batch processor's stages timed in-process over the same messages.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as sync_redis
from kafka import KafkaAdminClient

from cdpulse.bench import redis_memory
from cdpulse.bench.ceiling import ceiling
from cdpulse.bench.http_load import run_load
from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import (
    cores_used,
    cpu_snapshot,
    load_average,
    machine,
    pid_listening_on,
    sample_process,
)
from cdpulse.bench.report import throughput_of
from cdpulse.bench.sampler import Sampler, summarize
from cdpulse.bench.stack import kafka_address, redis_address
from cdpulse.bench.stages import messages_of, time_stages
from cdpulse.bench.stats import histogram_delta, histogram_quantile, percentiles
from cdpulse.bench.workers import Scrape, WorkerProcess, stop_all
from cdpulse.bench.workload import Record, Workload, produce_all, produce_at_rate, shop_workload
from cdpulse.contract.topics import Topics
from cdpulse.ops.progress import Reporter
from cdpulse.producer import Producer
from cdpulse.settings import Settings

LATENCY_METRIC = "cdpulse_ingest_to_written_seconds"
LATENCY_METHOD = (
    "cdpulse_ingest_to_written_seconds: Kafka CreateTime (stamped by the producer at send()) "
    "to the profile write acknowledged by Redis. Bucket counts are scraped after the warm-up "
    "and after the drain; quantiles are interpolated inside buckets as Prometheus' "
    "histogram_quantile does."
)
RECO_LATENCY_METRIC = "cdpulse_ingest_to_recommendation_seconds"
ENGINE = (
    "the full worker: profile update, churn labels and scoring with reasons, lifetime-value "
    "summaries, item events forwarded to the recommender's learner, recommendation lists "
    "(at most one per customer per 30 s of event time), and the churn and recommender "
    "learners (one-partition topics, so in one of the workers)"
)
WINDOW = (0.1, 0.9)  # the share of the messages over which throughput is measured


@dataclass(frozen=True)
class BenchOptions:
    """What ``cdpulse bench`` was asked to do."""

    events: int = 500_000
    customers: int = 10_000
    workers: int = 2
    rate: float = 5_000.0
    latency_seconds: float = 30.0
    warmup_seconds: float = 3.0
    http_rate: float = 500.0
    http_seconds: float = 20.0
    partitions: int = 2
    seed: int = 1
    stage_events: int = 100_000
    sample_every: float = 0.5
    profile_dir: Path | None = None
    keep: bool = False


class GcPauses:
    """The garbage collector's pauses in this process, which would stall its clients."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.pauses.append(time.perf_counter() - self._started)

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, float]:
        return {
            "collections": len(self.pauses),
            "total_seconds": sum(self.pauses),
            "max_seconds": max(self.pauses, default=0.0),
        }


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while it paces a producer or a load generator.

    A full collection here stops every thread for tens of ms: read latencies measured by
    this process would grow by it, and a paced producer would send a burst after it. A
    phase's garbage is small and is collected right after it.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class BenchRun:
    """The state of one run: its names, clients and the result being built."""

    options: BenchOptions
    base: Settings
    work_dir: Path
    name: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = self.phase_settings("w1")
        self.topics = Topics.from_settings(self.settings)
        self.redis = sync_redis.Redis.from_url(self.base.redis_url)
        self.kafka_port = kafka_address(self.base)[1]
        self.redis_port = redis_address(self.base)[1]
        self.groups: list[str] = []
        self.prefixes: list[str] = []

    # --- names -----------------------------------------------------------------------------

    def variables(self, phase: str) -> dict[str, str]:
        """The worker environment of ``phase``: the run's topics, the phase's group and prefix."""
        return {
            "CDPULSE_KAFKA_BOOTSTRAP": self.base.kafka_bootstrap,
            "CDPULSE_REDIS_URL": self.base.redis_url,
            "CDPULSE_TOPIC_CLICKSTREAM": f"{self.name}.clickstream",
            "CDPULSE_TOPIC_TRANSACTIONS": f"{self.name}.transactions",
            "CDPULSE_TOPIC_CUSTOMERS": f"{self.name}.customers",
            "CDPULSE_TOPIC_DEAD_LETTER": f"{self.name}.dead-letter",
            # The model topics belong to one phase: its learners start from nothing.
            "CDPULSE_TOPIC_TRAINING": f"{self.name}-{phase}.training",
            "CDPULSE_TOPIC_RECO_EVENTS": f"{self.name}-{phase}.reco-events",
            "CDPULSE_TOPIC_RECOMMENDATIONS": f"{self.name}-{phase}.recommendations",
            "CDPULSE_TOPIC_SEGMENTS": f"{self.name}-{phase}.segments",
            "CDPULSE_TOPIC_AUDIT": f"{self.name}-{phase}.audit",
            # The bench's own workers on 127.0.0.1: a throwaway key, the API without tokens.
            "CDPULSE_PSEUDONYM_KEY": self.base.pseudonym_key.get_secret_value() or "bench-key",
            "CDPULSE_AUTH_DISABLED": "true",
            "CDPULSE_TOPIC_TRIGGERS": f"{self.name}-{phase}.triggers",
            "CDPULSE_TOPIC_OFFER_REWARDS": f"{self.name}-{phase}.offer-rewards",
            "CDPULSE_TOPIC_PARTITIONS": str(self.options.partitions),
            "CDPULSE_APP_ID": f"cdpulse-{self.name}-{phase}",
            "CDPULSE_REDIS_PREFIX": f"{self.name}-{phase}",
            "CDPULSE_DATA_DIR": str(self.work_dir / phase / "data"),
        }

    def phase_settings(self, phase: str) -> Settings:
        overrides = {
            k.removeprefix("CDPULSE_").lower(): v for k, v in self.variables(phase).items()
        }
        return Settings(**{**self.base.model_dump(), **overrides})

    def start_workers(self, phase: str, count: int) -> list[WorkerProcess]:
        variables = self.variables(phase)
        self.groups.append(variables["CDPULSE_APP_ID"])
        self.prefixes.append(variables["CDPULSE_REDIS_PREFIX"])
        (self.work_dir / phase).mkdir(parents=True, exist_ok=True)
        workers = []
        for i in range(count):
            profile = None
            if self.options.profile_dir is not None:
                self.options.profile_dir.mkdir(parents=True, exist_ok=True)
                profile = self.options.profile_dir / f"{phase}-worker{i}.prof"
            worker = WorkerProcess(variables, self.work_dir / phase / f"worker{i}.log", profile)
            worker.start()
            workers.append(worker)
        return workers

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        o = self.options
        self.result.update(
            {
                "version": 1,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "load_average": {"start": load_average()},
                "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
                "worker_settings": {
                    "batch_size": self.base.batch_size,
                    "batch_within": self.base.batch_within,
                    "commit_interval": self.base.commit_interval,
                    "topic_partitions": o.partitions,
                },
                "engine": ENGINE,
            }
        )
        pauses = GcPauses()
        try:
            workload = self.prepare()
            # The workload is ~1M long-lived objects; without this every full collection
            # walks them all and stalls the load generator and the producer for ~0.1-0.5 s.
            gc.freeze()
            pauses.start()
            self.measure_ceiling()
            if o.workers >= 2:
                # First, so both throughput phases read exactly the same messages.
                workers = self.start_workers("w2", 2)
                try:
                    self.measure_throughput(workers, "w2")
                finally:
                    stop_all(workers)
                self.cleanup_prefix(f"{self.name}-w2")
            workers = self.start_workers("w1", 1)
            try:
                self.measure_throughput(workers, "w1")
                self.measure_latencies(workers[0], workload)
                self.measure_reads(workers[0], workload)
            finally:
                stop_all(workers)
            self.result["scaling"] = scaling(self.result["throughput"])
            self.measure_stages(workload)
        finally:
            pauses.stop()
            self.result["bench_gc_pauses"] = pauses.summary()
            self.result["load_average"]["end"] = load_average()
            self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            if not o.keep:
                self.cleanup()
        return self.result

    def prepare(self) -> Workload:
        o = self.options
        # Twice what the latency phase needs: a second run below capacity may follow.
        extra = 2 * int(o.rate * (o.latency_seconds + o.warmup_seconds))
        say(f"simulating {o.events + extra:,} events of {o.customers:,} customers")
        workload = shop_workload(o.events + extra, o.customers, o.seed)
        head = workload.records[: o.events]
        self.result["workload"] = {
            "events": o.events,
            "latency_events": extra,
            "customers": o.customers,
            "simulated_days": workload.days,
            "mean_event_bytes": sum(len(r.value) for r in head) / len(head),
            "by_topic": Workload(list(head), workload.days).topic_counts(self.topics),
        }
        producer = Producer.from_settings(self.settings)
        with producer, Reporter("produce", o.events) as progress:
            seconds = produce_all(producer, self.topics, head, progress.advance)
        self.result["produce"] = {"seconds": seconds, "events_per_second": o.events / seconds}
        say(f"produced {o.events:,} events in {seconds:.1f}s")
        return workload

    def measure_ceiling(self) -> None:
        say("ceiling: a bare aiokafka consumer, json.loads only")
        with Offsets(self.base.kafka_bootstrap) as offsets:
            partitions = offsets.partitions(list(self.topics.inputs))
        found = ceiling(
            self.base.kafka_bootstrap,
            [(tp.topic, tp.partition) for tp in partitions],
            self.options.events,
        )
        self.result["ceiling"] = {
            "events": found.messages,
            "seconds": found.seconds,
            "events_per_second": found.events_per_second,
            "cpu_seconds_per_1000": found.cpu_seconds / found.messages * 1000,
        }
        say(f"ceiling: {found.events_per_second:,.0f} events/s")

    def measure_throughput(self, workers: list[WorkerProcess], phase: str) -> None:
        o = self.options
        group = self.variables(phase)["CDPULSE_APP_ID"]
        prefix = self.variables(phase)["CDPULSE_REDIS_PREFIX"]
        used_before = redis_memory.used_memory(self.redis)
        load_before = load_average()
        say(f"throughput: {len(workers)} worker(s), {o.events:,} events")
        with Offsets(self.base.kafka_bootstrap) as offsets:
            ends = offsets.ends(offsets.partitions(list(self.topics.inputs)))
            total = sum(ends.values())
            sampler = Sampler(workers, offsets, group, self.redis, self.kafka_port)
            deadline = time.monotonic() + max(600.0, total / 500)
            with Reporter(f"throughput ({len(workers)} worker(s))", total) as progress:
                while True:
                    sample = sampler.take(ends)
                    progress.advance(sample.committed - progress.done)
                    if sample.committed >= total:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"workers committed {sample.committed:,} of {total:,} messages "
                            f"before the deadline; logs in {self.work_dir / phase}"
                        )
                    time.sleep(o.sample_every)
        summary = summarize(sampler.samples, total, *WINDOW)
        summary["workers"] = len(workers)
        summary["peak_rss_bytes"] = [sample_process(w.pid).peak_rss_bytes for w in workers]
        summary["load_average"] = {"start": load_before, "end": load_average()}
        summary["timeline"] = [s.as_dict() for s in sampler.samples]
        self.result.setdefault("throughput", []).append(summary)
        rate = summary.get("events_per_second")
        say(f"throughput: {rate or 0:,.0f} events/s with {len(workers)} worker(s)")
        if phase == "w1":
            self.result["redis"] = redis_memory.measure(self.redis, prefix, used_before)
            say(f"redis: {self.result['redis']['bytes_per_profile'] or 0:,.0f} bytes per profile")

    def measure_latency(
        self, worker: WorkerProcess, records: list[Record], rate: float
    ) -> dict[str, Any]:
        """Produce ``records`` at ``rate``; produce → written percentiles after the warm-up."""
        o = self.options
        warmup = int(rate * o.warmup_seconds)
        say(f"latency: {len(records):,} events at {rate:,.0f}/s, {o.warmup_seconds:g}s warm-up")
        before: dict[str, Any] = {}
        started = time.monotonic()

        def mark(sent: int) -> None:
            """Once the warm-up is sent: the histogram and CPU the steady part starts from."""
            if sent >= warmup and "scrape" not in before:
                before["scrape"] = worker.scrape()
                before["cpu"] = cpu_snapshot(self.pids(worker))

        with (
            Producer.from_settings(self.settings) as producer,
            self._tracking(worker) as track,
            collector_paused(),
        ):
            sent, seconds = produce_at_rate(producer, self.topics, records, rate, mark)
            mark(sent)
            producing = cores_used(before["cpu"], cpu_snapshot(self.pids(worker)))
        self.wait_drained("w1")
        drained = time.monotonic() - started
        after = worker.scrape()
        after_cpu = cpu_snapshot(self.pids(worker))
        cores = cores_used(before["cpu"], after_cpu)
        worker_cpu = after_cpu.processes["worker"] - before["cpu"].processes["worker"]
        first: Scrape = before["scrape"]
        buckets = histogram_delta(after.buckets[LATENCY_METRIC], first.buckets[LATENCY_METRIC])
        reco = histogram_delta(
            after.buckets.get(RECO_LATENCY_METRIC, []), first.buckets.get(RECO_LATENCY_METRIC, [])
        )
        batches = after.value("cdpulse_batch_size_count") - first.value("cdpulse_batch_size_count")
        batched = after.value("cdpulse_batch_size_sum") - first.value("cdpulse_batch_size_sum")
        found = {
            "method": LATENCY_METHOD,
            "rate": rate,
            "achieved_rate": sent / seconds,
            "events": sent,
            "observed": buckets[-1][1],
            **{q: histogram_quantile(float(q[1:]) / 100, buckets) for q in ("p50", "p95", "p99")},
            "recommendation": {
                "observed": reco[-1][1] if reco else 0,
                **{
                    q: histogram_quantile(float(q[1:]) / 100, reco)
                    if reco and reco[-1][1]
                    else None
                    for q in ("p50", "p95", "p99")
                },
            },
            "drained_seconds": drained,
            # Offsets are committed every second, so a worker that kept up drains within ~1.5 s.
            "kept_up": drained < seconds + 2.0,
            "mean_batch": batched / batches if batches else None,
            "worker_cpu_utilisation": cores.get("worker"),
            "worker_cpu_seconds_per_1000": worker_cpu / max(1, sent - warmup) * 1000,
            # The bench process while it produced: mostly kafka-python's send().
            "producer_cpu_utilisation": producing.get("bench"),
            "cores": cores,
            "buckets": buckets,
            "timeline": track,
            "load_average": load_average(),
        }
        say(
            f"latency at {rate:,.0f}/s: p50 {found['p50'] * 1000:.1f} ms, "
            f"p95 {found['p95'] * 1000:.1f} ms, p99 {found['p99'] * 1000:.1f} ms"
            + ("" if found["kept_up"] else " (the worker did not keep up)")
        )
        return found

    def measure_latencies(self, worker: WorkerProcess, workload: Workload) -> None:
        """At the asked rate; and when the worker could not keep up, at half its capacity.

        Above capacity the latency is a queue that grows for as long as the phase lasts,
        so the second run shows what the engine itself adds when it is not saturated.
        """
        o = self.options
        records = workload.records[o.events :]
        asked = int(o.rate * (o.latency_seconds + o.warmup_seconds))
        self.result["latency"] = self.measure_latency(worker, records[:asked], o.rate)
        capacity = (throughput_of(self.result, 1) or {}).get("events_per_second")
        if self.result["latency"]["kept_up"] or not capacity:
            return
        rate = max(100.0, round(capacity / 2, -2))
        count = int(rate * (o.latency_seconds + o.warmup_seconds))
        below = self.measure_latency(worker, records[asked : asked + count], rate)
        self.result["latency_below_capacity"] = below

    @contextlib.contextmanager
    def _tracking(self, worker: WorkerProcess) -> Iterator[list[dict[str, Any]]]:
        """Per-second latency quantiles while a phase runs, scraped on a thread."""
        timeline: list[dict[str, Any]] = []
        stop = threading.Event()

        def scrape_every_second() -> None:
            started = time.monotonic()
            previous = worker.scrape().buckets[LATENCY_METRIC]
            while not stop.wait(1.0):
                current = worker.scrape().buckets[LATENCY_METRIC]
                delta = histogram_delta(current, previous)
                previous = current
                point: dict[str, Any] = {"t": round(time.monotonic() - started, 3)}
                point["count"] = delta[-1][1]
                for q in ("p50", "p95", "p99"):
                    point[q] = histogram_quantile(float(q[1:]) / 100, delta)
                timeline.append(point)

        thread = threading.Thread(target=scrape_every_second, daemon=True)
        thread.start()
        try:
            yield timeline
        finally:
            stop.set()
            thread.join()

    def wait_drained(self, phase: str, timeout: float = 300) -> None:
        group = self.variables(phase)["CDPULSE_APP_ID"]
        with Offsets(self.base.kafka_bootstrap) as offsets:
            ends = offsets.ends(offsets.partitions(list(self.topics.inputs)))
            deadline = time.monotonic() + timeout
            while offsets.committed(group, ends) < sum(ends.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"group {group} not drained after {timeout:.0f}s")
                time.sleep(0.25)

    def measure_reads(self, worker: WorkerProcess, workload: Workload) -> None:
        o = self.options
        ids = workload.keys(o.events)
        step = max(1, len(ids) // 2000)
        paths = [f"/v1/profiles/{i}" for i in ids[::step]]
        self.result["http"] = self.measure_read(worker, "profile reads", paths)
        recommendations = [f"{p}/recommendations" for p in paths]
        self.result["http_recommendations"] = self.measure_read(
            worker, "recommendation reads", recommendations
        )

    def measure_read(self, worker: WorkerProcess, what: str, paths: list[str]) -> dict[str, Any]:
        """GET ``paths`` round-robin at the asked rate; latency, statuses and CPU."""
        o = self.options
        say(f"{what}: GET at {o.http_rate:,.0f}/s for {o.http_seconds:g}s, {len(paths)} ids")
        before = cpu_snapshot(self.pids(worker))
        with collector_paused():
            load = run_load(worker.url, paths, o.http_rate, o.http_seconds)
        cores = cores_used(before, cpu_snapshot(self.pids(worker)))
        latency = {**percentiles(load.latencies), "max": max(load.latencies)}
        found: dict[str, Any] = {
            "rate": o.http_rate,
            "achieved_rate": load.achieved_rate,
            "requests": len(load.latencies),
            "statuses": dict(load.statuses),
            "latency": latency,
            "service": {**percentiles(load.service), "max": max(load.service)},
            "worker_cpu_utilisation": cores.get("worker"),
            "cores": cores,
            "load_average": load_average(),
        }
        say(
            f"{what}: p50 {latency['p50'] * 1000:.2f} ms, p95 {latency['p95'] * 1000:.2f} ms, "
            f"p99 {latency['p99'] * 1000:.2f} ms"
        )
        return found

    def measure_stages(self, workload: Workload) -> None:
        o = self.options
        count = min(o.stage_events, o.events)
        say(f"stages: the batch processor in-process over {count:,} of the same events")
        settings = self.phase_settings("stages")
        self.prefixes.append(settings.redis_prefix)
        messages = messages_of(workload.records[:count], self.topics, o.partitions)
        times = time_stages(settings, messages, self.base.batch_size)
        self.result["stages"] = {
            "events": times.events,
            "batches": times.batches,
            "seconds": times.seconds,
            "cpu_seconds": times.cpu_seconds,
            "events_per_second": times.events_per_second,
            "cpu_seconds_per_1000": times.cpu_seconds / times.events * 1000,
            "stages_seconds": times.stages,
            "detail_seconds": times.detail,
            "calls": times.calls,
            "per_event_us": times.per_event_us(),
            "per_event_cpu_us": times.per_event_cpu_us(),
            "load_average": load_average(),
        }
        say(f"stages: {times.events_per_second:,.0f} events/s in-process")

    def pids(self, worker: WorkerProcess) -> dict[str, int | None]:
        """The processes a phase's CPU is split between (``others`` is the rest)."""
        return {
            "worker": worker.pid,
            "kafka": pid_listening_on(self.kafka_port),
            "redis": pid_listening_on(self.redis_port),
            "bench": os.getpid(),
        }

    # --- cleanup ---------------------------------------------------------------------------

    def cleanup_prefix(self, prefix: str) -> None:
        redis_memory.delete_prefix(self.redis, prefix)

    def cleanup(self) -> None:
        """Delete the run's keys, topics and consumer groups."""
        for prefix in self.prefixes:
            with contextlib.suppress(Exception):
                self.cleanup_prefix(prefix)
        admin = KafkaAdminClient(bootstrap_servers=self.base.kafka_bootstrap.split(","))
        try:
            with contextlib.suppress(Exception):
                admin.delete_topics(list(self.topics.all), timeout_ms=30000)
            with contextlib.suppress(Exception):
                admin.delete_groups(self.groups)
        finally:
            admin.close()
        self.redis.close()


def scaling(throughput: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Two workers' events/s over one worker's, when both phases ran."""
    rate: dict[int, float] = {
        t["workers"]: t["events_per_second"] for t in throughput if t.get("events_per_second")
    }
    if 1 not in rate or 2 not in rate:
        return None
    return {"one": rate[1], "two": rate[2], "ratio": rate[2] / rate[1]}


def run_bench(options: BenchOptions, settings: Settings, work_dir: Path) -> dict[str, Any]:
    """Run every phase; returns the result (also what ``--out`` writes)."""
    return BenchRun(options, settings, work_dir).run()


def source() -> dict[str, Any]:
    """Which code ran: the cdpulse package's folder and, in a git checkout, its commit."""
    import subprocess

    import cdpulse

    root = Path(cdpulse.__file__).resolve().parents[2]
    found: dict[str, Any] = {"path": str(root), "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found["commit"] = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        )
        found["dirty"] = bool(status.stdout.strip())
    return found


def command_line() -> str:
    """How this process was started, for the record."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("CDPULSE_"))
    return f"{env} {' '.join(argv)}".strip()
