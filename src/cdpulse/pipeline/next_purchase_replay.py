"""``cdpulse evaluate next-purchase``'s live measure: the worker's stages replayed over a file.

The worker's pipeline (``replay.replay_pipeline``: the same stages, cuts by partition and
dedupe, over memory) runs the file with one lifetime-value fit pinned, and counts what
the worker counts at every repeat order (``models.next_purchase.observe_order``): a worker
holding the same fit exports the same counters on /metrics for the same file, however
Kafka interleaved it. Each customer's ``next_purchase`` at the end is what the api shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.models.clv.lifetime import ClvSnapshot
from cdpulse.models.next_purchase import ERROR, MEASURED, PREDICTORS, next_purchase_view
from cdpulse.pipeline.batch import BatchReport
from cdpulse.pipeline.replay import Messages, Partitioner, feed, replay_pipeline
from cdpulse.pipeline.stages import Models
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import decode
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings


@dataclass(frozen=True)
class NextPurchaseLive:
    """The worker's live counts over a file, and each customer's next purchase at its end."""

    events: int
    rejected: int
    orders: int  # ``cdpulse_next_purchase_orders_measured_total``
    error_seconds: dict[str, int]  # ``cdpulse_next_purchase_error_seconds_total{predictor}``
    views: dict[str, dict[str, Any] | None]  # customer -> ``next_purchase`` (None: none shown)

    def mae_days(self, predictor: str) -> float | None:
        """Mean absolute error of ``predictor`` in days; None before any order measured."""
        if not self.orders:
            return None
        return round(self.error_seconds[predictor] / self.orders / (DAY / 1000), 2)


async def replay_next_purchase(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    clv: ClvSnapshot | None,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> NextPurchaseLive:
    """Replay JSON Lines (in event-time order) through the worker's stages in-process
    with ``clv`` as the lifetime-value fit throughout."""
    state, pipeline = replay_pipeline(
        settings, Models(clv=clv), ChurnLabeler.from_settings(settings), partition_of
    )
    cutter = Messages(Topics.from_settings(settings), settings.topic_partitions, partition_of)
    orders = 0
    errors = dict.fromkeys(PREDICTORS, 0)

    async def flush(batch: list[Message]) -> BatchReport:
        nonlocal orders
        report = await pipeline.run(batch)
        counts = report.work.counts
        orders += counts[MEASURED]
        for predictor in PREDICTORS:
            errors[predictor] += counts[ERROR + predictor]
        return report

    events, rejected = await feed(lines, cutter, flush, batch_size, progress)
    as_of = max(state.watermarks.values(), default=0)
    params = clv.model.purchases if clv is not None else None
    views: dict[str, dict[str, Any] | None] = {}
    for profile_id in sorted(state.blobs):
        profile = decode(state.blobs[profile_id][1])
        if profile.customer_id is None:
            continue
        # As ``profile_document``: no score without personalization consent.
        shown = allows(profile, "personalization")
        at = max(as_of, profile.last_seen)
        views[profile_id] = next_purchase_view(profile, params, at) if shown else None
    return NextPurchaseLive(events, rejected, orders, errors, views)
