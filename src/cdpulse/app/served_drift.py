"""The drift reports the api serves, and the health of the models judged from them alone.

Loaded with the snapshots, on the api's model refresh timer (``app/api.py``), so a model
card or a profile read finds them in memory: the health of lifetime value and of the
recommender (``assess_drift``: no label reaches them live, so their inputs' drift is all
there is to judge) is judged once per load, not per read. Nothing in the worker's
decisions reads it (no trigger depends on either model), so the api's request-time view
is the only one needed; churn's health travels with its snapshot instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdpulse.models.drift import DriftReport
from cdpulse.models.health import HealthPolicy, ModelHealth, assess_drift
from cdpulse.store.drift import RedisDriftStore


class ServedDrift:
    """The newest drift report of each of ``models`` as last loaded, and their health."""

    def __init__(self, store: RedisDriftStore, models: list[str], policy: HealthPolicy) -> None:
        self.store = store
        self.models = models
        self.policy = policy
        self.reports: dict[str, DriftReport] = {}
        self.judged: dict[str, ModelHealth] = {}
        self.loaded({})

    async def refresh(self) -> None:
        """Load the newest reports; a model whose report is missing keeps the one loaded."""
        self.loaded(await self.store.reports(self.models))

    def loaded(self, reports: Mapping[str, DriftReport]) -> None:
        """Serve ``reports`` (by model) from now on, and the health judged from them."""
        self.reports = {**self.reports, **reports}
        self.judged = {m: assess_drift(self.reports.get(m), self.policy) for m in self.models}

    def report(self, model: str) -> DriftReport | None:
        return self.reports.get(model)

    def health(self, model: str) -> ModelHealth:
        """``model``'s health from its inputs' drift (one of ``models``)."""
        return self.judged[model]
