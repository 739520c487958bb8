"""The input data-quality monitor on a worker's ``/metrics``, fed by every batch it writes.

One ``InputMonitor`` per worker process (``monitors/inputs.py``) reads the batch's
decoded events after the batch is written; its counts go to the ``cdpulse_input_*``
metrics, and the Prometheus rules alert on them (README: Operating it). Each worker sees
its own partitions: Prometheus sums the counters and takes the newest event time over
the workers; the volume ratio is each worker's own.

It also judges the health of each gated model's inputs per event-time hour
(``monitors/health.py``): ``sync`` adds the hours it flagged to Redis, shared by every
worker, and hands the flags of all of them to the trigger stages (``Models.gate``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from cdpulse.monitors.health import Gate, GateSpec, InputHealth, judged_through
from cdpulse.monitors.inputs import InputMonitor
from cdpulse.ops import metrics
from cdpulse.pipeline.decode import Decoded
from cdpulse.pipeline.stages import Models
from cdpulse.store.gate import RedisGateStore

log = logging.getLogger(__name__)


class InputQuality:
    """A worker's monitor and its metrics."""

    def __init__(self, sample: int, gating: Gating | None = None) -> None:
        self.monitor = InputMonitor(sample=sample)
        self.gating = gating
        # Each batch updates ~150 labelled series: looked up here once each, since
        # ``labels()`` checks and joins its arguments on every call.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, decoded: Decoded | None) -> None:
        """Count a written batch's events (an empty batch changes nothing).

        Telemetry only: it runs after the batch is written, outside its retries, so an
        error here is logged and the batch's counts skipped, never raised (a custom event's
        properties once crashed the profile agent from here).
        """
        if decoded is None or not decoded.items:
            return
        try:
            self._observe(decoded)
        except Exception:
            log.exception("the input data-quality monitor failed on a batch; its counts skipped")

    def _observe(self, decoded: Decoded) -> None:
        tally = self.monitor.observe(
            (item.message.topic, item.message.timestamp, item.event) for item in decoded.items
        )
        child = self._child
        for (kind, name, state), n in tally.fields.items():
            child(metrics.INPUT_FIELDS, kind, name, state).inc(n)
        for kind, name, value in tally.values:
            child(metrics.INPUT_VALUE, kind, name).observe(value)
        for topic, seconds in tally.lateness:
            child(metrics.INPUT_LATENESS, topic).observe(seconds)
        for (kind, state), n in tally.categories.items():
            child(metrics.INPUT_CATEGORIES, kind, state).inc(n)
        if self.gating is not None:
            health = self.gating.health
            for item in decoded.items:
                event = item.event
                health.observe(event.type, event.at, event.properties)
        for topic, at in self.monitor.newest.items():
            child(metrics.INPUT_NEWEST, topic).set(at / 1000)
        for (topic, kind), (ratio, mean) in self.monitor.volumes().items():
            child(metrics.INPUT_VOLUME, topic, kind).set(math.nan if ratio is None else ratio)
            child(metrics.INPUT_VOLUME_BASELINE, topic, kind).set(mean)

    async def sync(self) -> None:
        """After a written batch: judge, share and read the input-health flags."""
        if self.gating is not None:
            await self.gating.sync()


class Gating:
    """A worker's side of the trigger gate: judges the hours of its partitions, shares
    the flags in Redis, and hands every worker's flags to its trigger stages."""

    def __init__(
        self,
        gates: Mapping[str, GateSpec],
        store: RedisGateStore,
        models: Models,
        low_watermark: Callable[[], int],
        owned: Callable[[], tuple[int, ...]],
        partitions: int,
    ) -> None:
        # Every event is read: a verdict on a sample would differ by worker.
        self.health = InputHealth(dict(gates))
        self.store = store
        self.models = models
        self.low_watermark = low_watermark
        self.owned = owned
        self.partitions = partitions
        # Until the first flags are read every gated situation is held, not decided blind.
        models.gate = Gate()

    async def sync(self) -> None:
        """Judge the hours the low watermark has passed, add their flags to Redis, mark
        this worker's partitions judged, and give the stages every worker's flags.

        A failure is logged and tried again after the next batch; the stages keep the
        flags they had, and hold what those flags do not settle.
        """
        try:
            await self._sync()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("input-health flags not synchronised (tried again next batch): %s", exc)

    async def _sync(self) -> None:
        models = list(self.health.specs)
        through = judged_through(self.low_watermark())
        owned = self.owned()
        judged = self.health.judged
        if through >= 0 and owned and (judged is None or judged < through):
            before = await self.store.gate(models, self.partitions)
            settled = before.settled if before.settled is not None else -1
            new = self.health.judge(through)
            # A hour every partition had judged may have decided situations: its flags
            # are final (a worker that restarted judges it again, without its history).
            fresh = {m: {h: r for h, r in hours.items() if h > settled} for m, hours in new.items()}
            await self.store.flag(fresh)
            await self.store.judged(owned, through)
            for model, hours in fresh.items():
                for reason in hours.values():
                    metrics.INPUT_GATE_FLAGS.labels(model, reason).inc()
        gate = await self.store.gate(models, self.partitions)
        self.models.gate = gate
        for model in models:
            flagged = gate.settled is not None and gate.settled in gate.flags.get(model, {})
            metrics.INPUT_GATE_FLAGGED.labels(model).set(1 if flagged else 0)
