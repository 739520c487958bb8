"""Real ``cdpulse worker``, ``learner`` and ``api`` processes for a benchmark, and what
they report on /metrics.

Each phase of a run gets its own consumer group and Redis key prefix over the run's
own topics (as the integration tests do), so phases never see each other's state.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from cdpulse.bench.stats import Bucket


class RoleFailed(RuntimeError):
    """A role process did not start or died; the message carries the tail of its log."""


# ``read-ceiling``: not a role but the least a read costs on the api's stack
# (``bench.read_ceiling``), run and read like the api.
Role = Literal["worker", "learner", "api", "read-ceiling"]

# The setting that names each role's web port (``Settings``).
PORT_VARIABLE: dict[Role, str] = {
    "worker": "CDPULSE_WORKER_PORT",
    "learner": "CDPULSE_LEARNER_PORT",
    "api": "CDPULSE_WEB_PORT",
    "read-ceiling": "CDPULSE_WEB_PORT",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Scrape:
    """One read of a process's /metrics: plain samples and the histograms' buckets."""

    samples: dict[str, float]  # sample name (labels summed) -> value
    # histogram name -> cumulative buckets, labels summed; and under "name{label=value}"
    # (labels other than ``le``, sorted) each labelled series' own
    buckets: dict[str, list[Bucket]]

    def value(self, name: str) -> float:
        return self.samples.get(name, 0.0)


def parse_metrics(text: str) -> Scrape:
    """Sum every sample over its labels; collect each histogram's ``le`` buckets, summed
    and per labelled series."""
    samples: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and "le" in sample.labels:
                bound = float(sample.labels["le"])
                by_bound = buckets.setdefault(family.name, {})
                by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
                labels = sorted((k, v) for k, v in sample.labels.items() if k != "le")
                if labels:
                    series = family.name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"
                    own = buckets.setdefault(series, {})
                    own[bound] = own.get(bound, 0.0) + sample.value
            else:
                samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
                if sample.labels:  # and per labelled series, as histograms' buckets are
                    pairs = sorted(sample.labels.items())
                    series = sample.name + "{" + ",".join(f"{k}={v}" for k, v in pairs) + "}"
                    samples[series] = samples.get(series, 0.0) + sample.value
    return Scrape(samples, {name: sorted(b.items()) for name, b in buckets.items()})


class RoleProcess:
    """One ``cdpulse <role>`` subprocess with its own web port and log file."""

    def __init__(
        self, role: Role, variables: dict[str, str], log: Path, profile_to: Path | None = None
    ) -> None:
        self.role = role
        self.port = free_port()
        self.variables = {**variables, PORT_VARIABLE[role]: str(self.port)}
        self.log = log
        self.profile_to = profile_to
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RoleFailed(f"{self.role} not started")
        return self.process.pid

    @property
    def command(self) -> list[str]:
        if self.role == "read-ceiling":
            return ["-m", "cdpulse.bench.read_ceiling"]
        return ["-m", "cdpulse", self.role, "--loglevel", "warning"]

    def start(self) -> None:
        """Spawn the process; returns at once (``wait_healthy`` waits for it)."""
        profiler = ["-m", "cProfile", "-o", str(self.profile_to)] if self.profile_to else []
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *profiler, *self.command],
                env={**os.environ, **self.variables},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RoleFailed(
            f"{self.role} on port {self.port} not healthy after {timeout:.0f}s:\n{self.tail()}"
        )

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RoleFailed(
                f"{self.role} exited with {self.process.returncode} (log {self.log}):\n"
                f"{self.tail()}"
            )

    def scrape(self) -> Scrape:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return parse_metrics(response.read().decode("utf-8"))

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and wait (a clean shutdown commits offsets and writes a profile)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_all(processes: Iterable[RoleProcess]) -> None:
    for process in processes:
        process.stop()
