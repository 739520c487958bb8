"""The worker's HTTP API: profiles, the event collector, health and metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdpulse.contract.validation import Rejection, validate
from cdpulse.ingest.dead_letter import DeadLetter
from cdpulse.ingest.message import Message
from cdpulse.models.online import profile_document
from cdpulse.models.reco import Context
from cdpulse.models.reco_stream import recommendation_list
from cdpulse.ops import metrics
from cdpulse.ops.health import KafkaProbe
from cdpulse.privacy.consent import allows

if TYPE_CHECKING:
    from cdpulse.app.worker import Services

# A collector request may carry many events; each is still held to max_event_bytes.
MAX_EVENTS_PER_REQUEST = 500


def register_views(services: Services) -> None:
    """Add every view to the app."""
    app: faust.App = services.app
    settings = services.settings
    store = services.store
    probe = KafkaProbe(settings.kafka_bootstrap)

    @app.page("/v1/profiles/{profile_id}")
    class ProfileView(View):
        async def get(self, request: Request, profile_id: str) -> Response:
            profile = await store.get(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            as_of = await store.watermark()
            document = profile_document(
                profile,
                as_of,
                services.rules,
                services.registry.get(),
                services.clv.get(),
                settings.clv_horizon_days,
            )
            return self.json(document)

    @app.page("/v1/profiles/{profile_id}/recommendations")
    class RecommendationsView(View):
        async def get(self, request: Request, profile_id: str) -> Response:
            k = _k(request)
            if k is None:
                return self.json({"error": "k must be an integer from 1 to 100"}, status=400)
            profile = await store.get(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            if not allows(profile, "personalization"):
                # 451: withheld for a legal reason, not an error of the caller's token.
                return self.json(
                    {"error": f"profile {profile.id!r} has not consented to personalization"},
                    status=451,
                )
            snapshot = services.reco.get()
            if snapshot is None:
                return self.json(
                    {"error": "no recommender yet: it learns from the first item events"},
                    status=503,
                )
            items = snapshot.recommender.recommend(profile.id, Context.from_profile(profile), k=k)
            document = recommendation_list(profile.id, items, snapshot, None)
            return self.json(document.model_dump(mode="json"))

    @app.page("/v1/products/{product_id}/similar")
    class SimilarView(View):
        async def get(self, request: Request, product_id: str) -> Response:
            k = _k(request)
            if k is None:
                return self.json({"error": "k must be an integer from 1 to 100"}, status=400)
            snapshot = services.reco.get()
            if snapshot is None:
                return self.json(
                    {"error": "no recommender yet: it learns from the first item events"},
                    status=503,
                )
            items = snapshot.recommender.similar(product_id, k=k)
            return self.json(
                {
                    "product_id": product_id,
                    "items": [
                        {"product_id": r.product_id, "score": r.score, "reason": r.reason}
                        for r in items
                    ],
                    "model_version": snapshot.recommender.model_version,
                }
            )

    @app.page("/v1/events")
    class CollectorView(View):
        async def post(self, request: Request) -> Response:
            limit = settings.max_event_bytes * 16
            body = await request.read()
            if len(body) > limit:
                metrics.COLLECTOR_EVENTS.labels("too_large").inc()
                return self.json(
                    {"error": f"request body is {len(body)} bytes; the limit is {limit}"},
                    status=413,
                )
            try:
                # Strict UTF-8 first: json.loads would let encoded surrogates through.
                payload = json.loads(body.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers
                metrics.COLLECTOR_EVENTS.labels("bad_json").inc()
                return self.json({"error": f"body is not JSON: {exc}"}, status=400)
            batch = payload if isinstance(payload, list) else [payload]
            if not batch or len(batch) > MAX_EVENTS_PER_REQUEST:
                return self.json(
                    {"error": f"send 1 to {MAX_EVENTS_PER_REQUEST} events per request"},
                    status=400,
                )
            results = [await _collect(services, i, obj) for i, obj in enumerate(batch)]
            accepted = sum(r["status"] == "accepted" for r in results)
            status = 200 if accepted == len(results) else 422 if accepted == 0 else 207
            return self.json(
                {"accepted": accepted, "rejected": len(results) - accepted, "results": results},
                status=status,
            )

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            checks: dict[str, Any] = {}
            try:
                checks["redis"] = await store.ping()
            except Exception as exc:  # any failure means unhealthy, whatever its type
                checks["redis"] = False
                checks["redis_error"] = str(exc)
            checks["kafka"] = await probe.reachable()
            healthy = bool(checks["redis"] and checks["kafka"])
            return self.json({"healthy": healthy, **checks}, status=200 if healthy else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type, so it travels as a header.
            return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _k(request: Request) -> int | None:
    """The ``k`` query parameter (default 10), or None when it is not 1..100."""
    raw = request.query.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        return None
    return k if 1 <= k <= 100 else None


async def _collect(services: Services, index: int, obj: Any) -> dict[str, Any]:
    """Validate one posted event and produce it; its result line for the response."""
    settings = services.settings
    # ASCII escapes keep any parsed string encodable (lone surrogates included).
    raw = json.dumps(obj).encode("ascii")
    now = datetime.now(UTC)
    if len(raw) > settings.max_event_bytes:
        result: Any = Rejection(
            "too_large", f"event is {len(raw)} bytes; the limit is {settings.max_event_bytes}"
        )
    else:
        result = validate(
            obj, now=now, max_future_skew=timedelta(seconds=settings.max_future_skew_seconds)
        )
    if isinstance(result, Rejection):
        metrics.COLLECTOR_EVENTS.labels("rejected").inc()
        metrics.EVENTS_REJECTED.labels(result.reason).inc()
        letter = DeadLetter.of(Message("http", -1, -1, None, raw), result, now)
        await services.dead_letter.send(value=letter.to_json())
        return {
            "index": index,
            "event_id": result.event_id,
            "status": "rejected",
            "reason": result.reason,
            "detail": result.detail,
        }
    topic = services.outputs[services.topics.for_type(result.type)]
    delivery = await topic.send(key=result.key.encode("utf-8"), value=raw)
    await delivery
    metrics.COLLECTOR_EVENTS.labels("accepted").inc()
    return {"index": index, "event_id": result.event_id, "status": "accepted"}
