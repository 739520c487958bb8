"""Drift in the learner role: each model's monitor fed where it learns, and its report.

The churn learner feeds every example it learns (features, the score it gave before
learning, the event time the label was decided), each recommender shard its ranker's
examples (features, score, the item event's time), and the lifetime-value refit the
whole population at its ``as_of`` (inputs and expected value; ``DriftMonitor.replace``).
Every ``CDPULSE_DRIFT_SECONDS`` the learner saves its monitors to Redis and, one learner
at a time (a lock), merges every unit of each model into its report: published for the
api's model cards and put on this learner's ``/metrics``.

Churn is bucketed by the day its label was decided, not by the snapshot day: recent
snapshot days are only partly labelled (a churner is labelled a horizon later), so by
snapshot day the recent window would hold the customers who came back quickly and read
as drift. Offers are not tracked: a reward carries no event time.

A learner that dies loses what its monitors observed since they were last saved (at
most ``CDPULSE_DRIFT_SECONDS`` of examples); what it learns again after a restart is
skipped by offset, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence

import faust

from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.clv.lifetime import INPUTS, ClvSnapshot, OrderSummary, scored_inputs
from cdpulse.models.drift import SCORE, DriftMonitor, DriftReport, DriftWindows
from cdpulse.models.reco.ranker import FEATURES as RANKER_FEATURES
from cdpulse.ops import metrics
from cdpulse.settings import Settings
from cdpulse.store.drift import RedisDriftStore

log = logging.getLogger(__name__)

# The models whose drift is tracked, and their inputs in the order their rows give them.
TRACKED: dict[str, tuple[str, ...]] = {
    "churn": FEATURE_NAMES,
    "reco": RANKER_FEATURES,
    "clv": INPUTS,
}
STATUS_VALUE = {"stable": 0.0, "moderate": 1.0, "drifted": 2.0}


def windows_of(settings: Settings) -> DriftWindows:
    return DriftWindows.from_settings(settings)


class LearnerDrift:
    """This learner's drift monitors, by (model, unit), and the report job."""

    def __init__(self, settings: Settings, store: RedisDriftStore) -> None:
        self.settings = settings
        self.store = store
        self.windows = windows_of(settings)
        self.held: dict[tuple[str, int], DriftMonitor] = {}

    async def monitor(self, model: str, unit: int) -> DriftMonitor:
        """The monitor of ``model``'s ``unit``: held, or as last saved, or new."""
        found = self.held.get((model, unit))
        if found is None:
            found = await self.store.load(model, unit) or DriftMonitor(TRACKED[model])
            self.held[(model, unit)] = found
        return found

    def forget(self, model: str, unit: int) -> None:
        """Drop a held monitor: another learner took the unit over (a newer snapshot),
        so its saved monitor is read again."""
        self.held.pop((model, unit), None)

    async def observe(
        self, model: str, unit: int, scored: Iterable[tuple[int, int, Sequence[float]]]
    ) -> None:
        """Feed (offset, event time, values) rows the unit's learner just learned. Never
        raises: the learning is done, and a retry must not learn it again."""
        rows = list(scored)
        if not rows:
            return
        try:
            monitor = await self.monitor(model, unit)
        except Exception as exc:  # Redis: these rows go unobserved; the models learn on
            metrics.REDIS_ERRORS.inc()
            log.warning("drift monitor of %s unit %s not loaded (%s)", model, unit, exc)
            return
        monitor.observe_learned(rows)

    async def refitted(
        self, summaries: list[OrderSummary], as_of: int, snapshot: ClvSnapshot | None
    ) -> None:
        """Lifetime value's population at ``as_of``, valued by ``snapshot``: the day's
        rows replaced, saved at once (refits run on whichever learner takes the lock)."""
        if snapshot is None:
            return
        horizon = self.settings.clv_horizon_days
        rows = await asyncio.to_thread(scored_inputs, summaries, as_of, snapshot, horizon)
        if not rows:
            return
        monitor = await self.store.load("clv", 0) or DriftMonitor(INPUTS)
        monitor.replace(as_of, rows)
        monitor.prune(self.windows)
        await self.store.save("clv", 0, monitor)

    async def tick(self) -> dict[str, DriftReport]:
        """Save the held monitors; under the lock, report every tracked model."""
        for (model, unit), monitor in list(self.held.items()):
            monitor.prune(self.windows)
            await self.store.save(model, unit, monitor)
        if not await self.store.lock(max(1, int(self.settings.drift_seconds))):
            return {}
        reports = {}
        for model, features in TRACKED.items():
            units = await self.store.monitors(model)
            if not units:
                continue
            report = await asyncio.to_thread(self._report, features, units)
            await self.store.publish(model, report)
            export(model, report)
            reports[model] = report
        return reports

    def _report(self, features: tuple[str, ...], units: list[DriftMonitor]) -> DriftReport:
        merged = DriftMonitor(features)
        for unit in units:
            merged.merge(unit)
        return merged.report(self.windows, self.settings.drift_psi_threshold)


def export(model: str, report: DriftReport) -> None:
    """A model's drift on /metrics: NaN while unknown, with ``input_drift`` defined 0."""
    defined = report.status != "unknown"
    metrics.MODEL_DRIFT_STATUS.labels(model).set(STATUS_VALUE.get(report.status, math.nan))
    metrics.MODEL_QUALITY_DEFINED.labels(model, "input_drift").set(1 if defined else 0)
    for name, value in report.psi().items():
        metrics.MODEL_DRIFT_PSI.labels(model, name).set(math.nan if value is None else value)
    if report.score is None:
        metrics.MODEL_DRIFT_PSI.labels(model, SCORE).set(math.nan)


def register_drift(app: faust.App, drift: LearnerDrift) -> None:
    """The learner's drift timer."""

    @app.timer(interval=drift.settings.drift_seconds)  # type: ignore[untyped-decorator]
    async def drift_reports() -> None:
        try:
            await drift.tick()
        except Exception as exc:  # telemetry: the models learn on regardless
            metrics.REDIS_ERRORS.inc()
            log.warning("drift report failed: %s", exc)
