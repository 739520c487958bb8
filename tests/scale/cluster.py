"""A three-broker KRaft cluster of the tests' own, started by ``deploy/local/kafka.sh
--brokers 3`` (the script ``stack.sh --brokers 3`` runs), in ``.run/test-k3`` on ports
19192-19197 (``CDPULSE_TEST_K3_PORT`` moves them; below the ephemeral range, where a client's port
may take one)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import wait_until
from tests.integration.stack import REPO_ROOT, StackError

SCRIPT = REPO_ROOT / "deploy" / "local" / "kafka.sh"
RUN_DIR = Path(os.environ.get("CDPULSE_TEST_K3_RUN_DIR", REPO_ROOT / ".run" / "test-k3"))
FIRST_PORT = int(os.environ.get("CDPULSE_TEST_K3_PORT", "19192"))


class KafkaCluster:
    """Three brokers, each a controller quorum voter; node ``i`` listens on
    ``FIRST_PORT + 2(i-1)`` (its controller on the port after)."""

    brokers = 3

    def __init__(self, run_dir: Path = RUN_DIR, first_port: int = FIRST_PORT) -> None:
        self.run_dir = run_dir
        self.first_port = first_port

    def _run(self, command: str) -> str:
        env = {
            **os.environ,
            "CDPULSE_RUN_DIR": str(self.run_dir),
            "CDPULSE_KAFKA_PORT": str(self.first_port),
            "CDPULSE_KAFKA_CONTROLLER_PORT": str(self.first_port + 1),
            # Three JVMs on a two-core machine beside the session's own stack.
            "CDPULSE_KAFKA_HEAP": os.environ.get("CDPULSE_KAFKA_HEAP", "-Xms128m -Xmx512m"),
        }
        done = subprocess.run(
            [str(SCRIPT), "--brokers", str(self.brokers), command],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=240,
        )
        if done.returncode != 0:
            raise StackError(f"kafka.sh {command} exited {done.returncode}:\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        """Start every node not running (all of them, or one killed); returns once all serve."""
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    @property
    def bootstrap(self) -> str:
        return self._run("bootstrap").strip()

    def wait_for_brokers(self) -> None:
        """Until the cluster's metadata lists every broker (each node logs that it started
        a moment before the others' metadata has it)."""
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","))
        try:
            wait_until(
                lambda: len(admin.describe_cluster()["brokers"]) == self.brokers,
                60,
                f"{self.brokers} brokers in the cluster metadata",
            )
        finally:
            admin.close()

    def pid(self, node_id: int) -> int:
        return int((self.run_dir / f"kafka-{node_id}" / "kafka.pid").read_text().strip())

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` and wait until its process is gone."""
        pid = self.pid(node_id)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
            except FileNotFoundError:
                return
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return  # a zombie: dead, waiting for its parent to reap it
            time.sleep(0.05)
        raise AssertionError(f"kafka node {node_id} (pid {pid}) survived SIGKILL for 30 s")
