"""The input data-quality monitor on a worker's ``/metrics``, fed by every batch it writes.

One ``InputMonitor`` per worker process (``monitors/inputs.py``) reads the batch's
decoded events after the batch is written; its counts go to the ``cdpulse_input_*``
metrics, and the Prometheus rules alert on them (README: Operating it). Each worker sees
its own partitions: Prometheus sums the counters and takes the newest event time over
the workers; the volume ratio is each worker's own.
"""

from __future__ import annotations

import logging
import math

from cdpulse.monitors.inputs import InputMonitor
from cdpulse.ops import metrics
from cdpulse.pipeline.decode import Decoded

log = logging.getLogger(__name__)


class InputQuality:
    """A worker's monitor and its metrics."""

    def __init__(self, sample: int) -> None:
        self.monitor = InputMonitor(sample=sample)

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
        for (kind, name, state), n in tally.fields.items():
            metrics.INPUT_FIELDS.labels(kind, name, state).inc(n)
        for kind, name, value in tally.values:
            metrics.INPUT_VALUE.labels(kind, name).observe(value)
        for topic, seconds in tally.lateness:
            metrics.INPUT_LATENESS.labels(topic).observe(seconds)
        for (kind, state), n in tally.categories.items():
            metrics.INPUT_CATEGORIES.labels(kind, state).inc(n)
        for topic, at in self.monitor.newest.items():
            metrics.INPUT_NEWEST.labels(topic).set(at / 1000)
        for (topic, kind), (ratio, mean) in self.monitor.volumes().items():
            metrics.INPUT_VOLUME.labels(topic, kind).set(math.nan if ratio is None else ratio)
            metrics.INPUT_VOLUME_BASELINE.labels(topic, kind).set(mean)
