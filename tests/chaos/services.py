"""A Kafka or Redis of one test's own, started by the same scripts as ``make demo``.

Tests that kill or restart a service use one of these, never the session's shared stack,
so no other test sees the fault. ``stop`` is the clean way down (SIGTERM: Redis writes
its append-only file and exits, Kafka closes its logs); ``kill`` is SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import free_port
from tests.integration.stack import REPO_ROOT, StackError

SCRIPTS = REPO_ROOT / "deploy" / "local"


class PrivateService:
    """One service run by ``deploy/local/<script>`` in a run directory of its own."""

    script = ""
    pid_file = ""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.ports: dict[str, int] = {}

    def _run(self, command: str) -> str:
        env = {
            **os.environ,
            "CDPULSE_RUN_DIR": str(self.run_dir),
            **{name: str(port) for name, port in self.ports.items()},
        }
        done = subprocess.run(
            [str(SCRIPTS / self.script), command],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=180,
        )
        if done.returncode != 0:
            raise StackError(f"{self.script} {command} exited {done.returncode}:\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        """SIGTERM, and wait until the process is gone."""
        self._run("stop")

    @property
    def pid(self) -> int:
        return int((self.run_dir / self.pid_file).read_text().strip())

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        sigkill(self.pid)


def sigkill(pid: int) -> None:
    """SIGKILL ``pid`` and wait (30 s at most) until the process is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            break  # a zombie: dead, waiting for its parent to reap it
        time.sleep(0.05)


class PrivateRedis(PrivateService):
    """A Redis with the stack's configuration (append-only file, fsync every second)."""

    script = "redis.sh"
    pid_file = "redis/redis.pid"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.ports = {"CDPULSE_REDIS_PORT": free_port()}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['CDPULSE_REDIS_PORT']}/0"


class PrivateKafka(PrivateService):
    """A single-node KRaft broker with the stack's configuration."""

    script = "kafka.sh"
    pid_file = "kafka/kafka.pid"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.ports = {
            "CDPULSE_KAFKA_PORT": free_port(),
            "CDPULSE_KAFKA_CONTROLLER_PORT": free_port(),
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['CDPULSE_KAFKA_PORT']}"
