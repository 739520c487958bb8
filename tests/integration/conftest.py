"""Integration fixtures: the real local Kafka and Redis, once per session; real processes.

The session starts the same stack scripts ``make demo`` uses, on ports of its own so
a running demo is never touched. Every test gets its own topic names, Redis key
prefix and consumer groups, so tests never see each other's data.

cdpulse runs as three process roles (``app/base.py``), and a test starts the ones it
needs: ``env.worker()`` makes profiles (and serves their metrics), ``env.api()`` serves
every HTTP read and the collector, ``env.learner()`` learns the models and publishes
the recommendation lists; ``env.roles()`` starts several with the same settings. Each
role's metrics are its own: read a metric from the process that owns it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdpulse.connections import BlockingRedis, blocking_redis
from cdpulse.settings import Settings
from tests.integration.stack import start_stack, stop_stack
from tests.oracle import PSEUDONYM_KEY

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("CDPULSE_TEST_RUN_DIR", ROOT / ".run" / "test"))
KAFKA_PORT = int(os.environ.get("CDPULSE_TEST_KAFKA_PORT", "19092"))
CONTROLLER_PORT = int(os.environ.get("CDPULSE_TEST_KAFKA_CONTROLLER_PORT", "19093"))
REDIS_PORT = int(os.environ.get("CDPULSE_TEST_REDIS_PORT", "16379"))

# A worker killed with SIGKILL keeps its partitions until the broker gives up on it: the
# session timeout, 60 s by default in faust. Ten seconds keeps the kill tests short; the
# hand-over itself is the same.
FAST_FAILOVER = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    start_stack(RUN_DIR, KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT)
    try:
        yield
    finally:
        if not os.environ.get("CDPULSE_TEST_KEEP_STACK"):
            stop_stack(RUN_DIR, KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` s.

    ``explain`` adds to the failure what a post-mortem needs (the lag, the processes'
    logs): CI's temporary directories are gone by the time anyone reads its output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    message = f"timed out after {timeout:.0f}s waiting for {what}"
    if explain is not None:
        message += "\n" + explain()
    raise AssertionError(message)


@dataclass
class Env:
    """One test's isolated slice of the stack: topics, key prefix, group, web port."""

    name: str
    settings: Settings
    variables: dict[str, str]
    logs: Path
    workers: list[Worker] = field(default_factory=list)

    @property
    def redis(self) -> BlockingRedis:
        """A client of the test's Redis: one node's, or a Redis Cluster's."""
        return blocking_redis(self.settings.redis_url)

    def worker(self, **overrides: str) -> Worker:
        """Start a real ``cdpulse worker`` process (the profile agent; health and metrics
        only on HTTP) and wait until it serves."""
        return self._start("worker", overrides)

    def learner(self, **overrides: str) -> Worker:
        """Start a real ``cdpulse learner`` process (the learners and refits)."""
        return self._start("learner", overrides)

    def api(self, **overrides: str) -> Worker:
        """Start a real ``cdpulse api`` process (the HTTP API) and wait until it serves."""
        return self._start("api", overrides)

    def roles(self, learner: bool = False, **overrides: str) -> Roles:
        """A worker and an api (and a learner when asked), all with the same settings."""
        return Roles(
            self.worker(**overrides),
            self.api(**overrides),
            self.learner(**overrides) if learner else None,
        )

    def _start(self, role: str, overrides: dict[str, str]) -> Worker:
        port = free_port()
        variables = {
            **self.variables,
            PORT_VARIABLE[role]: str(port),
            "CDPULSE_DATA_DIR": str(self.logs / "data"),
            **overrides,
        }
        started = sum(w.role == role for w in self.workers)
        log = self.logs / f"{role}-{started}.log"
        worker = Worker(variables, port, log, role)
        self.workers.append(worker)
        worker.start()
        return worker


@dataclass(frozen=True)
class Roles:
    """The processes of one test's cdpulse: the api serves what the worker made."""

    worker: Worker
    api: Worker
    learner: Worker | None = None

    @property
    def learning(self) -> Worker:
        """The learner, which the test asked for."""
        assert self.learner is not None, "start the roles with learner=True"
        return self.learner


PORT_VARIABLE = {
    "worker": "CDPULSE_WORKER_PORT",
    "learner": "CDPULSE_LEARNER_PORT",
    "api": "CDPULSE_WEB_PORT",
}


class Worker:
    """A ``cdpulse <role>`` subprocess (worker, learner or api); the name is the role's
    that most tests start."""

    def __init__(self, variables: dict[str, str], port: int, log: Path, role: str = "worker"):
        self.variables = variables
        self.port = port
        self.log = log
        self.role = role
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def loglevel(self) -> str:
        """warning, unless a test (CDPULSE_TEST_LOGLEVEL) or the session
        (CDPULSE_TEST_WORKER_LOGLEVEL) asks for more."""
        default = os.environ.get("CDPULSE_TEST_WORKER_LOGLEVEL", "warning")
        return self.variables.get("CDPULSE_TEST_LOGLEVEL", default)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.variables}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cdpulse", self.role, "--loglevel", self.loglevel],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:
            wait_until(self._healthy, 90, f"{self.role} on port {self.port} to be healthy")
        except AssertionError:
            raise AssertionError(f"{self.role} did not start; log tail:\n{self.tail()}") from None

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.role} exited with {self.process.returncode}:\n{self.tail()}"
            )
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of a metric's samples (optionally matching ``labels``) from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != name:
                    continue
                if labels and any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                total += sample.value
        return total

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown that commits offsets."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the worker dies between writing Redis and committing offsets."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def env_variables(name: str, redis_url: str) -> dict[str, str]:
    """The settings of one test's slice of the stack, all named after ``name``."""
    return {
        "CDPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}",
        "CDPULSE_REDIS_URL": redis_url,
        "CDPULSE_TOPIC_CLICKSTREAM": f"{name}.clickstream",
        "CDPULSE_TOPIC_TRANSACTIONS": f"{name}.transactions",
        "CDPULSE_TOPIC_CUSTOMERS": f"{name}.customers",
        "CDPULSE_TOPIC_DEAD_LETTER": f"{name}.dead-letter",
        "CDPULSE_TOPIC_TRAINING": f"{name}.training",
        "CDPULSE_TOPIC_CAMPAIGN_TRAINING": f"{name}.campaign-training",
        "CDPULSE_TOPIC_PERSONA_TRAINING": f"{name}.persona-training",
        "CDPULSE_TOPIC_RECO_EVENTS": f"{name}.reco-events",
        "CDPULSE_TOPIC_RECOMMENDATIONS": f"{name}.recommendations",
        "CDPULSE_TOPIC_SEGMENTS": f"{name}.segments",
        "CDPULSE_TOPIC_AUDIT": f"{name}.audit",
        "CDPULSE_TOPIC_READ_AUDIT": f"{name}.read-audit",
        "CDPULSE_TOPIC_TRIGGERS": f"{name}.triggers",
        "CDPULSE_TOPIC_OFFER_REWARDS": f"{name}.offer-rewards",
        "CDPULSE_TOPIC_ERASURES": f"{name}.erasures",
        "CDPULSE_REDIS_PREFIX": name,
        "CDPULSE_APP_ID": f"cdpulse-{name}",
        "CDPULSE_TOPIC_PARTITIONS": "4",
        # The session's stack is one broker (tests/scale runs a replicated cluster).
        "CDPULSE_TOPIC_REPLICATION": "1",
        "CDPULSE_TOPIC_MIN_INSYNC_REPLICAS": "1",
        # The oracle pseudonymises under the same key; tests of auth configure tokens.
        "CDPULSE_PSEUDONYM_KEY": PSEUDONYM_KEY.decode(),
        "CDPULSE_AUTH_DISABLED": "true",
        # Tests wait for the models the learner publishes: refreshed sooner than a
        # deployment's default, which spares a worker's latency the reloads.
        "CDPULSE_MODEL_REFRESH_SECONDS": "5",
        # Tests wait on what the learner publishes while pytest, the stack and the worker
        # share the machine: it takes its equal share here (niceness changes no result).
        "CDPULSE_LEARNER_NICE": "0",
    }


def make_env(tmp_path: Path, redis_url: str) -> Iterator[Env]:
    """One test's ``Env`` on the session's Kafka and the Redis at ``redis_url``; its
    processes are stopped after the test."""
    name = f"t{uuid.uuid4().hex[:10]}"
    variables = env_variables(name, redis_url)
    settings = Settings(**{k.removeprefix("CDPULSE_").lower(): v for k, v in variables.items()})
    test_env = Env(name, settings, variables, tmp_path)
    try:
        yield test_env
    finally:
        for worker in test_env.workers:
            worker.stop()


@pytest.fixture
def env(stack: None, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path, f"redis://127.0.0.1:{REDIS_PORT}/0")


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Read ``topic`` from the start until ``expected`` records arrived (or timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
        # A little longer: more than expected would be a bug worth seeing.
        records.extend(consumer)
    finally:
        consumer.close()
    return records


def drained(settings: Settings) -> bool:
    """Whether the worker group has committed every input message."""
    behind = input_lag(settings)
    return behind is not None and not behind


def input_lag(settings: Settings) -> dict[str, tuple[int | None, int]] | None:
    """The worker group's input partitions not committed to their end.

    ``"topic[p]" -> (committed, end)``, committed None when the group has none; None
    when the broker cannot tell yet (it creates ``__consumer_offsets`` on first use).
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        try:
            committed = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
        except KafkaError:
            return None

        partitions = [
            TopicPartition(t, p)
            for t in (
                settings.topic_clickstream,
                settings.topic_transactions,
                settings.topic_customers,
            )
            for p in range(settings.topic_partitions)
        ]
        ends = consumer.end_offsets(partitions)
        behind: dict[str, tuple[int | None, int]] = {}
        for tp in partitions:
            done = committed[tp].offset if tp in committed else None
            if ends[tp] and (done is None or done < ends[tp]):
                behind[f"{tp.topic}[{tp.partition}]"] = (done, ends[tp])
        return behind
    finally:
        admin.close()
        consumer.close()


# What a worker's log repeats by the hundred while a broker is down: left out of tails.
NOISE = ("Unable connect to node", "Unable to update metadata", "Failed fetch messages")
WATCHED = (
    "cdpulse_events_consumed_total",
    "cdpulse_events_applied_total",
    "cdpulse_batch_failures_total",
    "cdpulse_kafka_errors_total",
    "cdpulse_redis_errors_total",
)


def why_not_drained(env: Env) -> str:
    """The lag and each worker's state, for a drain that timed out."""
    parts = [f"input partitions behind (committed, end): {input_lag(env.settings)}"]
    for worker in env.workers:
        if worker.role != "worker" or worker.process is None:
            continue
        if worker.process.poll() is not None:
            state = f"exited with {worker.process.returncode}"
        else:
            try:
                state = ", ".join(f"{m}={worker.metric(m):.0f}" for m in WATCHED)
                state += "; /readyz: " + httpx.get(f"{worker.url}/readyz", timeout=5).text
            except httpx.HTTPError as exc:
                state = f"/metrics did not answer ({exc!r})"
        lines = worker.log.read_text(encoding="utf-8", errors="replace").splitlines()
        quiet = [line for line in lines if not any(n in line for n in NOISE)]
        parts.append(f"{worker.log.name}: {state}; its log's last lines, without noise:")
        parts.extend(quiet[-80:])
    return "\n".join(parts)


def wait_drained(env: Env, timeout: float, what: str = "the worker to drain its topics") -> None:
    """Wait until the worker group committed every input message, or fail saying why."""
    wait_until(lambda: drained(env.settings), timeout, what, lambda: why_not_drained(env))


def learner_group(settings: Settings) -> str:
    """The learner role's consumer group (``app/base.py``: ``{app_id}-learner``)."""
    return f"{settings.app_id}-learner"


def caught_up(settings: Settings, topic: str) -> bool:
    """Whether the learner has committed every message of ``topic`` (every partition).

    The learner commits a batch only after learning it (and publishing what it made of
    it), so this holds once everything on ``topic`` so far was learned.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    group = learner_group(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        try:
            committed = admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return False
        return sum(ends.values()) > 0 and all(
            ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp])
            for tp in partitions
        )
    finally:
        admin.close()
        consumer.close()


def low_watermark(settings: Settings) -> int:
    """The low watermark of the input partitions (0 until every one has reported)."""
    from cdpulse.store.keys import Keys

    client = blocking_redis(settings.redis_url)
    try:
        marks = client.hvals(Keys(settings.redis_prefix).watermark)
    finally:
        client.close()
    if len(marks) < 3 * settings.topic_partitions:
        return 0
    return min(int(m) for m in marks)


def decided(settings: Settings) -> bool:
    """Whether the workers decided every churn label and trigger the low watermark made due.

    Labels and triggers are decided at the low watermark of the batch before, and an
    idle worker runs an empty batch to decide what the last batch made due; until then
    the due schedules still hold profiles due by the watermark. Their outputs are
    published before the write that moves the schedules, so once this holds, every
    training example and trigger firing of the stream so far is on its topic.
    """
    from cdpulse.store.keys import keys_for

    low = low_watermark(settings)
    if low <= 0:
        return False  # a partition has not reported: nothing can be decided yet
    late = int(settings.trigger_lateness_seconds * 1000)
    client = blocking_redis(settings.redis_url)
    keys = keys_for(client, settings.redis_prefix)
    try:
        for partition in range(settings.topic_partitions):
            for shard in keys.shards():
                # The churn schedule holds decision times with their lateness; the trigger
                # schedule holds the times of the situations, decided ``late`` after.
                if client.zcount(shard.due(partition, "churn"), "-inf", low):
                    return False
                if client.zcount(shard.due(partition, "trigger"), "-inf", low - late):
                    return False
        return True
    finally:
        client.close()
