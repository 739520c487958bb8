"""Kafka and Redis for a benchmark: the configured ones, or the local stack started for it.

``cdpulse bench`` uses whatever answers at ``CDPULSE_KAFKA_BOOTSTRAP`` and
``CDPULSE_REDIS_URL``. When neither answers and both point at this machine, it starts
``deploy/local/stack.sh`` on those ports (run dir ``.run/bench`` unless
``CDPULSE_RUN_DIR`` says otherwise) and stops it when the run ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import cdpulse
from cdpulse.settings import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class StackUnavailable(RuntimeError):
    """Kafka or Redis cannot be reached and cannot be started here; the message says why."""


def repo_root() -> Path | None:
    """The source checkout cdpulse runs from, when it has the local stack scripts."""
    root = Path(cdpulse.__file__).resolve().parents[2]
    return root if (root / "deploy" / "local" / "stack.sh").is_file() else None


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 9092)


def redis_address(settings: Settings) -> tuple[str, int]:
    url = urlparse(settings.redis_url)
    return url.hostname or "127.0.0.1", url.port or 6379


@dataclass
class LocalStack:
    """The local stack this run started (or None of it: ``started`` is False)."""

    script: Path | None = None
    variables: dict[str, str] | None = None
    started: bool = False

    def stop(self) -> None:
        if self.started and self.script is not None:
            _run(self.script, "stop", self.variables or {})
            self.started = False


def ensure_stack(settings: Settings, allow_start: bool) -> LocalStack:
    """Make sure Kafka and Redis answer; start the local stack when allowed and needed."""
    kafka, redis = kafka_address(settings), redis_address(settings)
    kafka_up, redis_up = reachable(*kafka), reachable(*redis)
    if kafka_up and redis_up:
        return LocalStack()
    down = [
        f"{name} at {host}:{port}"
        for name, (host, port), up in (("Kafka", kafka, kafka_up), ("Redis", redis, redis_up))
        if not up
    ]
    if not allow_start:
        raise StackUnavailable(
            f"nothing answers for {' and '.join(down)}; start them (`make stack-up`) "
            "or drop --no-stack to let the bench start the local stack"
        )
    if kafka_up or redis_up:
        raise StackUnavailable(
            f"only {' and '.join(down)} is down; the bench starts the local stack only when "
            "neither Kafka nor Redis answers. Start the missing one or point "
            "CDPULSE_KAFKA_BOOTSTRAP / CDPULSE_REDIS_URL elsewhere"
        )
    if kafka[0] not in LOCAL_HOSTS or redis[0] not in LOCAL_HOSTS:
        raise StackUnavailable(
            f"{' and '.join(down)} do not answer, and the bench starts Kafka and Redis only "
            "on this machine (127.0.0.1)"
        )
    root = repo_root()
    if root is None:
        raise StackUnavailable(
            "no deploy/local/stack.sh next to this cdpulse install; start Kafka and Redis "
            "yourself and pass --no-stack"
        )
    variables = {
        "CDPULSE_KAFKA_PORT": str(kafka[1]),
        "CDPULSE_KAFKA_CONTROLLER_PORT": os.environ.get(
            "CDPULSE_KAFKA_CONTROLLER_PORT", str(kafka[1] + 1)
        ),
        "CDPULSE_REDIS_PORT": str(redis[1]),
        "CDPULSE_RUN_DIR": os.environ.get("CDPULSE_RUN_DIR", str(root / ".run" / "bench")),
    }
    script = root / "deploy" / "local" / "stack.sh"
    _run(script, "start", variables)
    return LocalStack(script, variables, started=True)


def _run(script: Path, command: str, variables: dict[str, str]) -> None:
    try:
        subprocess.run(
            [str(script), command],
            env={**os.environ, **variables},
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        raise StackUnavailable(
            f"{script.name} {command} exited {exc.returncode}:\n{exc.stdout}{exc.stderr}"
        ) from exc
