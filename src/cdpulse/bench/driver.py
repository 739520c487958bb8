"""One benchmark run, phase by phase, against real Kafka, Redis and cdpulse's process roles.

1. **workload**: the shop's events, serialised once; the first ``events`` (the backlog)
   produced to the run's own input topics before any clock starts.
2. **ceilings** (``ceiling``): the bare consumer (aiokafka, ``json.loads`` only) and the
   hand-written minimal-profile pipeline (confluent-kafka, orjson, one pipelined Lua
   update per event, a commit per batch), each in its own process, over the backlog.
3. **throughput, 1 worker** (``engine``): ``cdpulse worker``, ``learner`` and ``api`` in
   their own processes, a fresh group and key prefix; sampled until the worker's group
   committed the backlog, then until the learner caught up. Redis bytes per profile.
4. **steady, at half of that capacity** (``steady``): a producer process at
   0.5 x the measured events/s; produce → profile written (the worker's histogram),
   produce → recommendation list (the learner's), the learner's lag.
5. **steady + reads**: the same rate again, with two load processes reading
   ``GET /v1/profiles/{id}`` and ``/recommendations`` from the api at ``http_rate`` each;
   with the ceilings, once more from the read ceiling (``read_ceiling``: aiohttp and
   redis-py answering each read with one ``HGET`` of the stored bytes) in its place.
6. **throughput, 2 workers** on the same messages (fresh group, prefix and input topics,
   fed once both workers have joined): the scaling.
7. **stages** (``stages``): the pipeline's stages timed in-process over the same events.

Every phase records the load average, the cores each process used and the busiest
processes that were not the run's own, so the report says how contended it was.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from cdpulse.bench import redis_memory
from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import load_average, machine, pid_listening_on
from cdpulse.bench.produce import Row, write_records
from cdpulse.bench.roles import RoleFailed, RoleProcess, stop_all
from cdpulse.bench.stack import kafka_address, redis_address
from cdpulse.bench.workload import Workload, shop_workload
from cdpulse.connections import blocking_redis
from cdpulse.contract.topics import Topics
from cdpulse.kafka_admin import live_brokers
from cdpulse.settings import Settings

ENGINE = (
    "the full engine in its three process roles: the worker (decode, profile update, "
    "identity, churn labels and scoring, lifetime-value summaries, segments, experiments, "
    "trigger watches, item events, consent and pseudonymised outputs), the learner (churn, "
    "recommender with its lists, offers, CLV and RFM refits) and the api (reads)"
)


@dataclass(frozen=True)
class BenchOptions:
    """What ``cdpulse bench`` was asked to do."""

    events: int = 200_000
    customers: int = 10_000
    workers: int = 2
    partitions: int = 2
    rate: float | None = None  # steady events/s; None: half the measured 1-worker capacity
    max_rate: float = 10_000.0  # the steady phases' events are simulated for at most this
    warmup_seconds: float = 5.0
    latency_seconds: float = 30.0
    http_rate: float = 1_000.0
    http_seconds: float = 20.0
    learner_wait: float = 60.0
    ceilings: bool = True
    steady: bool = True
    stage_events: int = 50_000
    seed: int = 1
    sample_every: float = 0.5
    profile_dir: Path | None = None
    keep: bool = False

    def steady_events(self, rate: float) -> tuple[int, int]:
        """Events of the latency phase and of the reads phase at ``rate``."""
        latency = int(rate * (self.warmup_seconds + self.latency_seconds))
        # The producer outlives the load processes by a little: reads never see an idle worker.
        reads = int(rate * (self.warmup_seconds + self.http_seconds + 3.0))
        return latency, reads


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
        # Input topics of a phase that has its own (name prefix), not the run's backlog.
        self.inputs: dict[str, str] = {}
        self.replication = self.durability()
        self.settings = self.phase_settings("w1")
        self.topics = Topics.from_settings(self.settings)
        self.redis = blocking_redis(self.base.redis_url)  # one Redis or a Redis Cluster
        self.kafka_port = kafka_address(self.base)[1]
        self.redis_port = redis_address(self.base)[1]
        self.kafka_pid = pid_listening_on(self.kafka_port)
        self.redis_pid = pid_listening_on(self.redis_port)
        self.groups: list[str] = []
        self.prefixes: list[str] = []
        self.created_topics: set[str] = set(self.topics.inputs)
        self.backlog_ends: dict[Any, int] = {}
        self.helpers: list[int] = []  # pids of the producer and load processes, now running
        self.feeder: subprocess.Popen[bytes] | None = None  # the producer feeding a phase

    def durability(self) -> tuple[int, int]:
        """The replication factor and min.insync.replicas of the run's own topics: the
        settings', but at most the cluster's live brokers, so the bench runs as it is on
        the one-broker local stack (the result says what it used)."""
        admin = KafkaAdminClient(
            bootstrap_servers=self.base.kafka_bootstrap.split(","), request_timeout_ms=15000
        )
        try:
            brokers = live_brokers(admin, 1)
        finally:
            admin.close()
        replication = max(1, min(self.base.topic_replication, brokers))
        min_insync = min(self.base.topic_min_insync_replicas, replication)
        self.result["kafka"] = {
            "brokers": brokers,
            "topic_replication": replication,
            "topic_min_insync_replicas": min_insync,
        }
        return replication, min_insync

    # --- names -----------------------------------------------------------------------------

    def variables(self, phase: str) -> dict[str, str]:
        """The role environment of ``phase``: the run's topics, the phase's group and prefix."""
        inputs = self.inputs.get(phase, self.name)
        return {
            "CDPULSE_KAFKA_BOOTSTRAP": self.base.kafka_bootstrap,
            "CDPULSE_REDIS_URL": self.base.redis_url,
            "CDPULSE_TOPIC_CLICKSTREAM": f"{inputs}.clickstream",
            "CDPULSE_TOPIC_TRANSACTIONS": f"{inputs}.transactions",
            "CDPULSE_TOPIC_CUSTOMERS": f"{inputs}.customers",
            "CDPULSE_TOPIC_DEAD_LETTER": f"{inputs}.dead-letter",
            # The model topics belong to one phase: its learners start from nothing.
            "CDPULSE_TOPIC_TRAINING": f"{self.name}-{phase}.training",
            "CDPULSE_TOPIC_CAMPAIGN_TRAINING": f"{self.name}-{phase}.campaign-training",
            "CDPULSE_TOPIC_RECO_EVENTS": f"{self.name}-{phase}.reco-events",
            "CDPULSE_TOPIC_RECOMMENDATIONS": f"{self.name}-{phase}.recommendations",
            "CDPULSE_TOPIC_SEGMENTS": f"{self.name}-{phase}.segments",
            "CDPULSE_TOPIC_AUDIT": f"{self.name}-{phase}.audit",
            "CDPULSE_TOPIC_READ_AUDIT": f"{self.name}-{phase}.read-audit",
            "CDPULSE_TOPIC_TRIGGERS": f"{self.name}-{phase}.triggers",
            "CDPULSE_TOPIC_OFFER_REWARDS": f"{self.name}-{phase}.offer-rewards",
            "CDPULSE_TOPIC_ERASURES": f"{self.name}-{phase}.erasures",
            # The bench's own roles on 127.0.0.1: a throwaway key, the API without tokens.
            "CDPULSE_PSEUDONYM_KEY": self.base.pseudonym_key.get_secret_value() or "bench-key",
            "CDPULSE_AUTH_DISABLED": "true",
            "CDPULSE_TOPIC_PARTITIONS": str(self.options.partitions),
            "CDPULSE_APP_ID": f"cdpulse-{self.name}-{phase}",
            "CDPULSE_REDIS_PREFIX": f"{self.name}-{phase}",
            "CDPULSE_DATA_DIR": str(self.work_dir / phase / "data"),
            "CDPULSE_TOPIC_REPLICATION": str(self.replication[0]),
            "CDPULSE_TOPIC_MIN_INSYNC_REPLICAS": str(self.replication[1]),
        }

    def phase_settings(self, phase: str) -> Settings:
        overrides = {
            k.removeprefix("CDPULSE_").lower(): v for k, v in self.variables(phase).items()
        }
        return Settings(**{**self.base.model_dump(), **overrides})

    def group(self, phase: str) -> str:
        return self.variables(phase)["CDPULSE_APP_ID"]

    def learner_group(self, phase: str) -> str:
        return f"{self.group(phase)}-learner"  # as app/base.py names a role's group

    def learner_topics(self, phase: str) -> list[str]:
        v = self.variables(phase)
        return [
            v["CDPULSE_TOPIC_TRAINING"],
            v["CDPULSE_TOPIC_CAMPAIGN_TRAINING"],
            v["CDPULSE_TOPIC_RECO_EVENTS"],
            v["CDPULSE_TOPIC_OFFER_REWARDS"],
        ]

    def start_roles(self, phase: str, workers: int, api: bool) -> dict[str, RoleProcess]:
        """``worker0``.., ``learner`` (and ``api``) of ``phase``, started and healthy."""
        variables = self.variables(phase)
        self.groups += [self.group(phase), self.learner_group(phase), f"{self.group(phase)}-api"]
        self.prefixes.append(variables["CDPULSE_REDIS_PREFIX"])
        self.created_topics.update(Topics.from_settings(self.phase_settings(phase)).all)
        (self.work_dir / phase).mkdir(parents=True, exist_ok=True)
        wanted: list[tuple[str, Any]] = [(f"worker{i}", "worker") for i in range(workers)]
        wanted.append(("learner", "learner"))
        if api:
            wanted.append(("api", "api"))
        processes: dict[str, RoleProcess] = {}
        try:
            for name, role in wanted:
                profile = None
                if self.options.profile_dir is not None:
                    self.options.profile_dir.mkdir(parents=True, exist_ok=True)
                    profile = self.options.profile_dir / f"{phase}-{name}.prof"
                process = RoleProcess(
                    role, variables, self.work_dir / phase / f"{name}.log", profile
                )
                process.start()
                processes[name] = process
            for process in processes.values():
                process.wait_healthy()
        except BaseException:
            stop_all(processes.values())
            raise
        return processes

    def helper(self, module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """A bench process (``python -m cdpulse.bench.<module>``), its output to ``log``."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", f"cdpulse.bench.{module}", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return process

    def ours(self, processes: Mapping[str, RoleProcess]) -> set[int]:
        """The pids whose CPU is the run's own (not "others")."""
        pids = {p.pid for p in processes.values()} | {os.getpid(), *self.helpers}
        pids |= {pid for pid in (self.kafka_pid, self.redis_pid) if pid is not None}
        return pids

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from cdpulse.bench.stages import measure_stages
        from cdpulse.bench.steady import measure_steady
        from cdpulse.bench.throughput import measure_ceilings, measure_throughput, scaling

        o = self.options
        self.result.update(
            {
                "version": 2,
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
                "throughput": [],
            }
        )
        try:
            workload = self.prepare()
            # The workload is ~1M long-lived objects; without this every full collection
            # walks them all and stalls the sampler for ~0.1-0.5 s.
            gc.freeze()
            if o.ceilings:
                self.result["ceilings"] = measure_ceilings(self)
            roles = self.start_roles("w1", 1, api=True)
            aof = self.result["redis_aof"] = {"start": redis_memory.persistence(self.redis)}
            try:
                one = measure_throughput(self, roles, "w1", self.backlog_ends)
                aof["after_backlog"] = redis_memory.persistence(self.redis)
                self.result["throughput"].append(one)
                self.result["redis"] = redis_memory.measure(
                    self.redis, f"{self.name}-w1", one.pop("used_memory_before")
                )
                rate = self.steady_rate(one.get("events_per_second")) if o.steady else None
                if rate:
                    latency_count, reads_count = o.steady_events(rate)
                    at = o.events
                    rows = workload.rows(self.topics, at, at + latency_count)
                    self.result["steady"] = measure_steady(self, roles, rows, rate, None)
                    at += latency_count
                    rows = workload.rows(self.topics, at, at + reads_count)
                    paths = read_paths(workload, o.events)
                    self.result["steady_reads"] = measure_steady(self, roles, rows, rate, paths)
                    if o.ceilings:
                        at += reads_count
                        rows = workload.rows(self.topics, at, at + reads_count)
                        self.result["steady_read_ceiling"] = self.read_ceiling(
                            roles, rows, rate, paths
                        )
            finally:
                stop_all(roles.values())
                if "steady" in self.result:
                    aof["after_steady"] = redis_memory.persistence(self.redis)
            for n in (2, 4):  # scale-out: the same backlog, n workers on n partitions or more
                if o.workers < n:
                    break
                phase = f"w{n}"
                self.inputs[phase] = f"{self.name}-{phase}"
                roles = self.start_roles(phase, n, api=False)
                try:
                    ends = self.feed(phase, workload, members=n)
                    self.result["throughput"].append(measure_throughput(self, roles, phase, ends))
                finally:
                    stop_all(roles.values())
                    if self.feeder is not None:
                        self.feeder.wait(60)
                        self.helpers.remove(self.feeder.pid)
                redis_memory.delete_prefix(self.redis, f"{self.name}-{phase}")
                self.result["scaling"] = scaling(self.result["throughput"])
            if o.stage_events:
                self.result["stages"] = measure_stages(self, workload)
        except (RoleFailed, TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            # What was measured so far is still reported; the failure is in the result.
            self.result["failed"] = f"{type(exc).__name__}: {exc}"
            say(f"run failed: {self.result['failed']}")
        finally:
            self.result["load_average"]["end"] = load_average()
            self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            if not o.keep:
                self.cleanup()
        return self.result

    def read_ceiling(
        self,
        roles: dict[str, RoleProcess],
        rows: list[Row],
        rate: float,
        paths: dict[str, list[str]],
    ) -> dict[str, Any]:
        """The reads phase again, read from the read ceiling (``bench.read_ceiling``) on
        the same profiles instead of the api: the least the api's stack costs."""
        ceiling = RoleProcess(
            "read-ceiling", self.variables("w1"), self.work_dir / "w1" / "read-ceiling.log"
        )
        from cdpulse.bench.steady import measure_steady

        ceiling.start()
        try:
            ceiling.wait_healthy()
            served = {**roles, "api": ceiling}
            return measure_steady(self, served, rows, rate, paths, "steady-read-ceiling")
        finally:
            ceiling.stop()

    def steady_rate(self, capacity: float | None) -> float | None:
        """The steady phases' events/s: asked for, or half the capacity (to 100/s), capped."""
        o = self.options
        if o.rate is not None:
            return o.rate
        if not capacity:
            say("steady phases skipped: the 1-worker throughput was not measured")
            return None
        rate = max(100.0, round(capacity / 2, -2))
        if rate > o.max_rate:
            say(f"half the capacity is {rate:,.0f}/s; capped at --max-rate {o.max_rate:,.0f}")
            self.result["steady_rate_capped"] = {"half_capacity": rate, "max_rate": o.max_rate}
            rate = o.max_rate
        return rate

    def prepare(self) -> Workload:
        from cdpulse.kafka_admin import ensure_topics

        o = self.options
        latency, reads = o.steady_events(o.rate or o.max_rate)
        reads *= 2 if o.ceilings else 1  # the api's reads phase, then the read ceiling's
        total = o.events + latency + reads
        say(f"simulating {total:,} events of {o.customers:,} customers")
        workload = shop_workload(total, o.customers, o.seed)
        backlog = Workload(workload.records[: o.events], workload.days)
        self.result["workload"] = {
            "events": o.events,
            "steady_events_prepared": latency + reads,
            "customers": o.customers,
            "simulated_days": workload.days,
            "mean_event_bytes": sum(len(r.value) for r in backlog.records) / o.events,
            "by_topic": backlog.topic_counts(self.topics),
        }
        ensure_topics(self.settings)
        path = self.work_dir / "backlog.msgpack"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        write_records(path, workload.rows(self.topics, 0, o.events))
        say(f"producing the backlog of {o.events:,} events")
        found = self.produce(path, 0.0, self.work_dir / "backlog.json", timeout=900)
        self.result["produce"] = {
            "seconds": found["flushed_seconds"],
            "events_per_second": o.events / found["flushed_seconds"],
        }
        with Offsets(self.base.kafka_bootstrap) as offsets:
            self.backlog_ends = offsets.ends(offsets.partitions(list(self.topics.inputs)))
        say(f"produced {o.events:,} events in {found['flushed_seconds']:.1f}s")
        return workload

    def feed(self, phase: str, workload: Workload, members: int) -> dict[Any, int]:
        """The backlog again, into ``phase``'s own input topics, once its group is settled.

        The workers join first, on empty topics, and the messages follow: a worker that
        already holds every partition when the second one joins is not what is measured
        (and a rebalance under a full batch has crashed the worker: see the report).
        Returns the ends the phase's topics will have, from Kafka's partitioner.
        """
        from kafka import TopicPartition
        from kafka.partitioner.default import murmur2

        group = self.group(phase)
        with Offsets(self.base.kafka_bootstrap) as offsets:
            wait_for(
                lambda: offsets.members(group) == ("Stable", members),
                120,
                f"{phase}: the group {group} did not settle with {members} members",
                every=0.5,
            )
        topics = Topics.from_settings(self.phase_settings(phase))
        rows = workload.rows(topics, 0, self.options.events)
        path = self.work_dir / f"{phase}-backlog.msgpack"
        write_records(path, rows)
        self.feeder = self.start_producer(path, 0.0, self.work_dir / f"{phase}-backlog.json")
        self.helpers.append(self.feeder.pid)
        ends: dict[Any, int] = {}
        partitions = self.options.partitions
        for topic, key, _ in rows:
            tp = TopicPartition(topic, (murmur2(key) & 0x7FFFFFFF) % partitions)
            ends[tp] = ends.get(tp, 0) + 1
        return ends

    def start_producer(
        self, records: Path, rate: float, out: Path, started: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """A producer process (``produce``) sending ``records`` at ``rate`` (0: flat out)."""
        marker = ["--started", str(started)] if started is not None else []
        return self.helper(
            "produce",
            "--bootstrap", self.base.kafka_bootstrap,
            "--records", str(records),
            "--rate", str(rate),
            "--out", str(out),
            *marker,
            log=out.with_suffix(".log"),
        )  # fmt: skip

    def produce(self, records: Path, rate: float, out: Path, timeout: float) -> dict[str, Any]:
        """Run a producer process to its end; what it reports."""
        import json

        self.start_producer(records, rate, out).wait(timeout)
        if not out.exists():
            raise RuntimeError(f"the producer wrote no result; see {out.with_suffix('.log')}")
        found: dict[str, Any] = json.loads(out.read_text())
        return found

    # --- cleanup ---------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Delete the run's keys, topics and consumer groups."""
        for prefix in {*self.prefixes, f"{self.name}-minimal", f"{self.name}-stages"}:
            with contextlib.suppress(Exception):
                redis_memory.delete_prefix(self.redis, prefix)
        admin = KafkaAdminClient(bootstrap_servers=self.base.kafka_bootstrap.split(","))
        try:
            with contextlib.suppress(Exception):
                existing = set(admin.list_topics())
                mine = [t for t in existing if t.startswith((f"{self.name}.", f"{self.name}-"))]
                admin.delete_topics(mine, timeout_ms=30000)
            with contextlib.suppress(Exception):
                admin.delete_groups(self.groups)
        finally:
            admin.close()
        self.redis.close()


def read_paths(workload: Workload, events: int, count: int = 2000) -> dict[str, list[str]]:
    """The read phase's paths: ~``count`` ids that have a profile, for each endpoint."""
    ids = workload.keys(events)
    step = max(1, len(ids) // count)
    profiles = [f"/v1/profiles/{i}" for i in ids[::step]]
    return {
        "profile": profiles,
        "recommendations": [f"{p}/recommendations" for p in profiles],
    }


def run_bench(options: BenchOptions, settings: Settings, work_dir: Path) -> dict[str, Any]:
    """Run every phase; returns the result (also what ``--out`` writes)."""
    return BenchRun(options, settings, work_dir).run()


def wait_for(check: Any, timeout: float, what: str, every: float = 0.1) -> None:
    """Until ``check()`` is true; ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f}s")
        time.sleep(every)


def source() -> dict[str, Any]:
    """Which code ran: the cdpulse package's folder, whether it is the compiled build and,
    in a git checkout (``make compiled`` installs into the checkout's .venv-compiled), its
    commit."""
    import cdpulse
    from cdpulse.bench.stages import compiled

    root = Path(cdpulse.__file__).resolve().parents[2]
    found: dict[str, Any] = {
        "path": str(root),
        "compiled": compiled(),
        "commit": None,
        "dirty": None,
    }
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        root = Path(
            subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
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
