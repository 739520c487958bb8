"""Experiments on the stream: conversions from each batch's saved profiles, and the views."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cdpulse.app.segments import SegmentStream
from cdpulse.experiments.assignment import variant
from cdpulse.experiments.definitions import Experiment, experiments
from cdpulse.experiments.report import report
from cdpulse.ops import metrics
from cdpulse.profile.model import Profile
from cdpulse.profile.view import iso
from cdpulse.settings import Settings
from cdpulse.store.experiments import RedisExperimentStore
from cdpulse.store.redis import RedisProfileStore


class ExperimentStream:
    """Counts conversions: an exposed customer's order within the experiment's window."""

    def __init__(self, declared: tuple[Experiment, ...], store: RedisExperimentStore) -> None:
        self.declared = {e.name: e for e in declared}
        self.store = store

    async def observe(self, saved: list[Profile]) -> None:
        """Idempotent: a customer converts once per experiment, however often re-seen."""
        buyers = {p.id: p.last_order_at for p in saved if p.last_order_at is not None}
        if not buyers or not self.declared:
            return
        for experiment in self.declared.values():
            exposed = await self.store.exposures(experiment.name, list(buyers))
            converted = {
                customer: name
                for customer, (name, at) in exposed.items()
                if at <= (buyers[customer] or 0) < at + experiment.window_ms
            }
            if converted:
                await self.store.convert(experiment.name, converted)


def attach_experiments(
    app: faust.App,
    settings: Settings,
    client: Any,
    profiles: RedisProfileStore,
    segments: SegmentStream,
) -> ExperimentStream:
    """Build the experiment stream and register its views and its metrics timer."""
    declared = experiments(segments.book, settings.segments_file or "<segments>")
    store = RedisExperimentStore(client, settings.redis_prefix)
    stream = ExperimentStream(declared, store)

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
        except (RedisConnectionError, RedisTimeoutError, OSError):
            metrics.REDIS_ERRORS.inc()

    @app.page("/v1/experiments/{name}")
    class ExperimentView(View):
        async def get(self, request: Request, name: str) -> Response:
            experiment = stream.declared.get(name)
            if experiment is None:
                known = ", ".join(stream.declared) or "none are declared"
                return self.json({"error": f"no experiment {name!r} ({known})"}, status=404)
            return self.json(await results(experiment))

    @app.page("/v1/experiments/{name}/assignment/{customer_id}")
    class AssignmentView(View):
        """Serving an assignment is what exposes the customer: the first time is counted."""

        async def get(self, request: Request, name: str, customer_id: str) -> Response:
            experiment = stream.declared.get(name)
            if experiment is None:
                return self.json({"error": f"no experiment {name!r}"}, status=404)
            answer: dict[str, Any] = {"experiment": name, "customer_id": customer_id}
            audience = experiment.audience
            if audience is not None:
                membership = (await segments.store.read([customer_id]))[customer_id]
                if membership.generations.get(audience, 0) % 2 == 0:
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

    return stream
