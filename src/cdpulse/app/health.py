"""Health that tells the truth, for every role: liveness, readiness and metrics.

``/healthz`` answers whether the process can reach what it depends on (Redis, Kafka).
``/readyz`` also answers whether it is doing its job: not ready while its batches keep
failing (the same batch retried since longer than ``CDPULSE_STALL_SECONDS``), with the
reason in words and in ``cdpulse_ready``. Answers carry booleans and reasons, never
exception texts (which can hold hostnames or keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdpulse.app.auth import Guard
from cdpulse.connections import AsyncRedis
from cdpulse.ops import metrics
from cdpulse.ops.health import KafkaProbe, Reachability
from cdpulse.settings import Settings


class Health:
    """Whether this process's batches get through: failures since the last success."""

    def __init__(self, stall_seconds: float, clock: Any = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.failures = 0
        self.failing_since: float | None = None
        self.cause = ""

    def failed(self, exc: BaseException) -> None:
        """A batch step failed and is being retried."""
        self.failures += 1
        self.cause = type(exc).__name__
        if self.failing_since is None:
            self.failing_since = self.clock()
        self._publish()

    def succeeded(self) -> None:
        self.failures = 0
        self.failing_since = None
        self.cause = ""
        self._publish()

    def stalled(self) -> str:
        """Why this process is not ready ("" when it is)."""
        if self.failing_since is None:
            return ""
        seconds = self.clock() - self.failing_since
        if seconds < self.stall_seconds:
            return ""
        return (
            f"batches failing for {seconds:.0f}s ({self.failures} attempts, "
            f"last: {self.cause}); offsets are not moving"
        )

    def _publish(self) -> None:
        metrics.READY.set(0 if self.stalled() else 1)


def commit_readiness(app: faust.App, settings: Settings) -> Callable[[], tuple[bool, str]]:
    """``/readyz``'s ``offsets_committed``: false, with the reason, once the consumer's
    offset commits have failed for ``CDPULSE_STALL_SECONDS`` (``adapters/kafka/consumer``
    ``CommitWatch``); a role whose consumer keeps no watch is always true."""

    def check() -> tuple[bool, str]:
        watch = getattr(app.consumer, "commits", None)
        why: str = watch.stalled(settings.stall_seconds) if watch is not None else ""
        return not why, why

    return check


def fetch_readiness(app: faust.App, settings: Settings) -> Callable[[], tuple[bool, str]]:
    """``/readyz``'s ``fetching``: false, with the reason, once the consumer's fetch loop
    has not come round (or its partitions stayed paused) for ``CDPULSE_STALL_SECONDS``
    (``adapters/kafka/consumer`` ``FetchWatch``); a role whose consumer keeps no watch is
    always true."""

    def check() -> tuple[bool, str]:
        consumer = app.consumer
        watch = getattr(consumer, "fetches", None)
        if watch is None:
            return True, ""
        suspended = not getattr(consumer, "flow_active", True)
        why: str = watch.stalled(settings.stall_seconds, suspended)
        return not why, why

    return check


def register_health(
    app: faust.App,
    settings: Settings,
    health: Health | None,
    client: AsyncRedis,
    guard: Guard | None = None,
    readiness: Mapping[str, Callable[[], tuple[Any, str]]] | None = None,
) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics`` on the role's web server, behind the
    role's ``guard`` (one per process: its request limits count every route).
    ``readiness``: more of what ``/readyz`` shows, by name, each with why the process is
    not ready ("" when it is): the api's read audit (``app/audit.py``)."""
    reach = Reachability(
        {"redis": client.ping, "kafka": KafkaProbe(settings.kafka_bootstrap).reachable}
    )
    guard = guard or Guard.from_settings(settings)
    app.task(reach.run)

    async def checks() -> dict[str, Any]:
        return dict(await reach.current())

    def refused(view: View, request: Request, public: bool) -> Response | None:
        # Public unless the settings say otherwise; then ``read``, through the one guard.
        return None if public else guard.refusal(view, request, "read")

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            denied = refused(self, request, settings.health_public)
            if denied is not None:
                return denied
            found = await checks()
            healthy = bool(found["redis"] and found["kafka"])
            return self.json({"healthy": healthy, **found}, status=200 if healthy else 503)

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            denied = refused(self, request, settings.health_public)
            if denied is not None:
                return denied
            found = await checks()
            stalled = health.stalled() if health is not None else ""
            reasons = [stalled] if stalled else []
            for name, check in (readiness or {}).items():
                found[name], why = check()
                reasons += [why] if why else []
            ready = bool(found["redis"] and found["kafka"] and not reasons)
            body = {"ready": ready, **found, "stalled": bool(stalled), "reason": "; ".join(reasons)}
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            denied = refused(self, request, settings.metrics_public)
            if denied is not None:
                return denied
            if health is not None:
                metrics.READY.set(0 if health.stalled() else 1)
            # aiohttp refuses a charset inside content_type, so it travels as a header.
            return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
