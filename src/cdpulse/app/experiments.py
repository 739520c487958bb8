"""Experiments on HTTP: a customer's assignment (which exposes them) and the results.

Conversions are counted by the workers' pipeline (an exposed customer's order within the
window, once per customer, with the profile's save); here the API assigns and reports.

Assignment is a POST with scope ``assign``: serving a variant is what exposes the
customer, a write that moves the experiment's counts, so it is neither a GET (which
proxies, prefetchers and crawlers may repeat freely) nor ``read`` (which never writes).
Nor is it ``ingest``: the answer tells whether the customer is in the audience segment,
which a token that may only send events must not learn. The variant itself is pure
(``experiments/assignment.py``: a hash, nothing stored); only the exposure is recorded.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from cdpulse.app.auth import Guard
from cdpulse.experiments.assignment import variant
from cdpulse.experiments.definitions import Experiment
from cdpulse.experiments.report import report
from cdpulse.ops import metrics
from cdpulse.profile.view import iso
from cdpulse.settings import Settings
from cdpulse.store.experiments import RedisExperimentStore
from cdpulse.store.redis import RedisProfileStore


def register_experiment_views(
    app: faust.App,
    settings: Settings,
    client: Any,
    profiles: RedisProfileStore,
    declared: tuple[Experiment, ...],
    guarded: Guard,
) -> None:
    """Add ``/v1/experiments`` and ``/v1/experiments/{name}`` (scope ``read``), the
    assignment view (``POST``, scope ``assign``) and the counts timer."""
    store = RedisExperimentStore(client, settings.redis_prefix)
    named = {e.name: e for e in declared}

    async def results(experiment: Experiment) -> dict[str, Any]:
        names = [name for name, _ in experiment.variants]
        arms = await store.arms(experiment.name, names)
        for name, arm in arms.items():
            metrics.EXPERIMENT_EXPOSURES.labels(experiment.name, name).set(arm.exposures)
            metrics.EXPERIMENT_CONVERSIONS.labels(experiment.name, name).set(arm.conversions)
        return report(experiment, arms)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def experiment_counts() -> None:
        try:
            for experiment in declared:
                await results(experiment)
        except Exception:  # telemetry only; the view answers with the error itself
            metrics.REDIS_ERRORS.inc()

    @app.page("/v1/experiments")
    class ExperimentsView(View):
        """Every declared experiment's results (the dashboard's panel)."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            return self.json({"experiments": [await results(e) for e in declared]})

    @app.page("/v1/experiments/{name}")
    class ExperimentView(View):
        @guarded("read")
        async def get(self, request: Request, name: str) -> Response:
            experiment = named.get(name)
            if experiment is None:
                known = ", ".join(named) or "none are declared"
                return self.json({"error": f"no experiment {name!r} ({known})"}, status=404)
            return self.json(await results(experiment))

    @app.page("/v1/experiments/{name}/assignment/{customer_id}")
    class AssignmentView(View):
        """Serving an assignment is what exposes the customer: the first time is counted."""

        @guarded("assign")
        async def post(self, request: Request, name: str, customer_id: str) -> Response:
            experiment = named.get(name)
            if experiment is None:
                return self.json({"error": f"no experiment {name!r}"}, status=404)
            answer: dict[str, Any] = {"experiment": name, "customer_id": customer_id}
            audience = experiment.audience
            if audience is not None:
                profile = await profiles.get(customer_id)
                generation = profile.segments.get(audience, 0) if profile is not None else 0
                if generation % 2 == 0:
                    return self.json(
                        {**answer, "variant": None, "reason": f"not in segment {audience!r}"}
                    )
            chosen = variant(name, customer_id, experiment.variants)
            # Exposure time is event time: conversions are orders in the window after it.
            at = await profiles.watermark()
            chosen, at, new = await store.expose(name, customer_id, chosen, at)
            return self.json(
                {**answer, "variant": chosen, "exposed_at": iso(at), "first_exposure": new}
            )
