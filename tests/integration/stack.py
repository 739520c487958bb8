"""The local Kafka and Redis for integration tests, started by the same script as ``make demo``.

The session fixture calls :func:`start_stack` once and :func:`stop_stack` at the end, on ports
and a run directory of its own, so tests never touch a stack a developer runs beside them::

    start_stack(TEST_RUN_DIR, TEST_KAFKA_PORT, TEST_CONTROLLER_PORT, TEST_REDIS_PORT)
    bootstrap = kafka_bootstrap(TEST_KAFKA_PORT)   # "127.0.0.1:19092"
    url = redis_url(TEST_REDIS_PORT)               # "redis://127.0.0.1:16379/0"

Starting is a no-op for a service already running in that run directory: a test stack left
running, by an interrupted session for instance, is reused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO_ROOT / "deploy" / "local" / "stack.sh"

# Away from the defaults (9092, 9093, 6379, .run) that `make demo` and `make stack-up` use.
TEST_RUN_DIR = REPO_ROOT / ".run" / "test"
TEST_KAFKA_PORT = 19092
TEST_CONTROLLER_PORT = 19093
TEST_REDIS_PORT = 16379


class StackError(RuntimeError):
    """``stack.sh`` failed; the message carries its output, which names the cause."""


def kafka_bootstrap(kafka_port: int, host: str = "127.0.0.1") -> str:
    """The ``bootstrap_servers`` string of the local broker (``CDPULSE_KAFKA_BOOTSTRAP``)."""
    return f"{host}:{kafka_port}"


def redis_url(redis_port: int, db: int = 0, host: str = "127.0.0.1") -> str:
    """The URL of the local Redis (``CDPULSE_REDIS_URL``)."""
    return f"redis://{host}:{redis_port}/{db}"


def start_stack(run_dir: Path, kafka_port: int, controller_port: int, redis_port: int) -> None:
    """Start Kafka and Redis in ``run_dir``; returns once both serve requests.

    Fetches the Kafka jars on first use (Maven, ~10 s) and installs ``redis-server`` with
    apt-get when it is missing. A port held by another process raises :class:`StackError`
    naming the port and the variable that moves it.
    """
    _run_stack(
        "start",
        run_dir,
        CDPULSE_KAFKA_PORT=str(kafka_port),
        CDPULSE_KAFKA_CONTROLLER_PORT=str(controller_port),
        CDPULSE_REDIS_PORT=str(redis_port),
    )


def stop_stack(run_dir: Path, *_ports: int) -> None:
    """Stop the Kafka and Redis of ``run_dir``; nothing of theirs keeps running.

    Services are stopped by the pid files in ``run_dir``, so the ports are not needed; they
    are accepted so that a call can mirror :func:`start_stack`.
    """
    _run_stack("stop", run_dir)


def _run_stack(command: str, run_dir: Path, **env: str) -> None:
    full_env = {**os.environ, "CDPULSE_RUN_DIR": str(Path(run_dir).resolve()), **env}
    try:
        subprocess.run(
            [str(STACK_SCRIPT), command],
            env=full_env,
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        raise StackError(
            f"{STACK_SCRIPT.relative_to(REPO_ROOT)} {command} (run dir {run_dir}) "
            f"exited {exc.returncode}:\n{exc.stdout}{exc.stderr}"
        ) from exc
