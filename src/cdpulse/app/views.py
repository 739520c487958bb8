"""The API role's views: profiles, recommendations, identity lookup, export, erasure, and
the event collector."""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from cdpulse.app.audit import answering
from cdpulse.app.auth import who
from cdpulse.app.collector import MAX_EVENTS_PER_REQUEST, collect, over_rate, refused
from cdpulse.contract.partitions import partition_of
from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.campaign.scoring import propensity
from cdpulse.models.churn.scoring import profile_document
from cdpulse.models.personas_learner import persona_of
from cdpulse.models.reco import Context
from cdpulse.models.reco.recommender import Recommendation
from cdpulse.models.reco_stream import RecoSnapshot, recommendation_list
from cdpulse.ops import metrics
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile
from cdpulse.store.export import Exporter

if TYPE_CHECKING:
    from cdpulse.app.api import Services


def register_views(services: Services) -> None:
    """Add every view to the app."""
    app: faust.App = services.app
    settings = services.settings
    store = services.store
    guarded = services.guard

    async def document_of(profile: Profile, as_of: int | None = None) -> dict[str, Any]:
        """The profile with its scores, as of the newest event time seen (``as_of``, when
        it was read with the profile)."""
        document = profile_document(
            profile,
            await store.watermark() if as_of is None else as_of,
            services.rules,
            services.registry.get(),
            services.clv.get(),
            settings.clv_horizon_days,
            services.drift.health("clv"),
        )
        document["persona"] = persona_of(profile, services.personas.get())
        return document

    def admin_event(name: str, kind: str, customer_id: str, **properties: str) -> dict[str, Any]:
        """The event an admin route publishes for ``customer_id``, named after the token
        that asked (``requested_by``)."""
        return {
            "event_id": f"{name}-{uuid.uuid4().hex}",
            "type": kind,
            "timestamp": int(time.time() * 1000),
            "customer_id": customer_id,
            "channel": "partner",
            "properties": {**properties, "requested_by": who()},
        }

    async def publish_admin(event: dict[str, Any], detail: str) -> dict[str, Any]:
        """Publish an admin route's event on its customer's partition of the customers
        topic (acknowledged), and the 202 answer: the worker carries it out in order with
        the customer's other events."""
        topic = services.outputs[services.topics.customers]
        key, value = event["customer_id"].encode(), json.dumps(event).encode()
        await (await topic.send(key=key, value=value))
        return {"status": "accepted", "event_id": event["event_id"], "detail": detail}

    partitions = settings.topic_partitions
    exporter = Exporter(
        store.client,
        settings.redis_prefix,
        services.rules.traits.pseudonymizer,
        lambda profile_id: partition_of(profile_id, partitions),
    )

    @app.page("/v1/profiles/{profile_id}")
    class ProfileView(View):
        @guarded("read")
        async def get(self, request: Request, profile_id: str) -> Response:
            # The profile and the watermark its scores are computed at: one round trip.
            profile, as_of = await store.get_as_of(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            document = await document_of(profile, as_of)
            return answering(self.json(document), document)

        @guarded("admin")
        async def delete(self, request: Request, profile_id: str) -> Response:
            # Erasure travels as an event on the customer's own partition, so it is
            # ordered with their other events and carried out by the one worker that
            # writes their profile.
            target = (await store.resolve([profile_id]))[profile_id]
            event = admin_event("erasure", "erasure_requested", target)
            detail = (
                "every key of the customer and its linked ids is erased when the worker "
                "reaches this event; the audit topic records it"
            )
            return self.json(await publish_admin(event, detail), status=202)

    @app.page("/v1/admin/merges")
    class CustomerMergeView(View):
        @guarded("admin")
        async def post(self, request: Request) -> Response:
            # Like erasure, a merge of two known customers travels as an event, on the
            # survivor's partition; the worker carries it out, or refuses it
            # (dead-lettered merge_refused), and the audit topic records either.
            fix = 'send {"customer_id": "<survivor>", "merged_id": "<merged away>"}'
            try:
                body = json.loads(await request.read())
            except ValueError:
                return self.json({"error": f"the body is not JSON; {fix}"}, status=400)
            if not isinstance(body, dict):
                return self.json({"error": f"the body must be a JSON object; {fix}"}, status=400)
            for name in ("customer_id", "merged_id"):
                if not isinstance(body.get(name), str) or not body[name]:
                    return self.json(
                        {"error": f"{name!r} must be a non-empty string; {fix}"}, status=400
                    )
            survivor, merged = body["customer_id"], body["merged_id"]
            if survivor == merged:
                return self.json(
                    {
                        "error": "'merged_id' must differ from 'customer_id': a customer is "
                        "not merged into itself"
                    },
                    status=400,
                )
            event = admin_event("merge", "customers_merged", survivor, merged_id=merged)
            checked = validate(event, now=datetime.now(UTC))
            if isinstance(checked, Rejection):
                return self.json({"error": f"{checked.detail}; {fix}"}, status=400)
            detail = (
                "merged_id is merged into customer_id when the worker reaches this event, "
                "or refused (dead letter merge_refused); the audit topic records either"
            )
            return self.json(await publish_admin(event, detail), status=202)

    @app.page("/v1/profiles/{profile_id}/export")
    class ExportView(View):
        @guarded("admin")
        async def get(self, request: Request, profile_id: str) -> Response:
            profile = await store.get(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            view = await document_of(profile)
            return self.json(await exporter.export(profile, view, services.reco.get()))

    @app.page("/v1/identities/lookup")
    class IdentityLookupView(View):
        @guarded("read")
        async def post(self, request: Request) -> Response:
            # POST, not GET: the email or phone travels in the body, never in a URL that
            # proxies and access logs keep.
            try:
                body = json.loads(await request.read())
                trait, value = str(body["trait"]), str(body["value"])
            except (ValueError, KeyError, TypeError):
                return self.json(
                    {"error": 'send {"trait": "email", "value": "..."} as a JSON object'},
                    status=400,
                )
            if trait not in services.rules.traits.personal:
                personal = ", ".join(sorted(services.rules.traits.personal))
                return self.json(
                    {"error": f"trait {trait!r} is not a personal trait; use one of {personal}"},
                    status=400,
                )
            pseudonym = services.rules.traits.pseudonymizer.pseudonym(trait, value)
            customer = await services.identities.find(pseudonym)
            if customer is None:
                return self.json({"error": f"no customer gave this {trait}"}, status=404)
            return self.json({"profile_id": customer, "pseudonym": pseudonym})

    served_lists = ServedLists(settings.reco_served_lists)

    @app.page("/v1/profiles/{profile_id}/recommendations")
    class RecommendationsView(View):
        @guarded("read")
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
            pseudonym = services.pseudonyms.of_id(profile.id)
            context = Context.from_profile(profile)
            items = served_lists.recommend(snapshot, profile.id, pseudonym, context, k)
            document = recommendation_list(profile.id, items, snapshot, None)
            # The recommender's health as the api last judged it (app/served_drift.py):
            # on this answer only, not on the topic's lists (their schema is a contract).
            quality = services.drift.health("reco").to_json()
            answer = {**document.model_dump(mode="json"), "quality": quality}
            return answering(self.json(answer), answer)

    @app.page("/v1/profiles/{profile_id}/propensity")
    class PropensityView(View):
        @guarded("read")
        async def get(self, request: Request, profile_id: str) -> Response:
            campaign, kind = request.query.get("campaign", ""), request.query.get("kind", "email")
            if not campaign or len(campaign) > 128 or kind not in ("email", "offer"):
                return self.json(
                    {
                        "error": "give ?campaign=<campaign or offer id> (1-128 characters) "
                        "and kind=email (the default) or kind=offer"
                    },
                    status=400,
                )
            profile, as_of = await store.get_as_of(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            scored = propensity(profile, services.campaign.get(), kind == "offer", as_of)
            if scored is None:
                return self.json(
                    {"error": f"profile {profile.id!r} has not consented to personalization"},
                    status=451,
                )
            if scored["model_version"] is None:
                return self.json(
                    {
                        "error": "no campaign-response model yet: it learns from the first "
                        "exposures whose response window closed"
                    },
                    status=503,
                )
            answer = {"profile_id": profile.id, "customer_id": profile.customer_id}
            return self.json({**answer, "campaign": campaign, "kind": kind, **scored})

    @app.page("/v1/products/{product_id}/similar")
    class SimilarView(View):
        @guarded("read")
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
        @guarded("ingest")
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
            # Event types need scopes of their own (auth.COLLECTOR_SCOPES): a request holding
            # one the token may not send is refused whole, before anything is produced.
            stop = refused(self, list(enumerate(batch))) or over_rate(
                self, services.ingest_limit, len(batch)
            )
            if stop is not None:
                return stop
            results = [await collect(services, i, obj) for i, obj in enumerate(batch)]
            accepted = sum(r["status"] == "accepted" for r in results)
            status = 200 if accepted == len(results) else 422 if accepted == 0 else 207
            return self.json(
                {"accepted": accepted, "rejected": len(results) - accepted, "results": results},
                status=status,
            )


class ServedLists:
    """The recommendation lists an api computed, the ``capacity`` read last kept.

    A list is a function of the served snapshot, the customer's pseudonym (their stored
    profile's id), the profile's ``Context`` (what ``recommend`` reads of a profile) and
    ``k``, and nothing else (no wall clock; a served snapshot is read-only). So a list is
    kept under (profile id, k) with the context it was computed for, and given again only
    for an equal context under the very snapshot it came from: a new snapshot empties
    the whole cache (and frees the old snapshot's lists), a changed cart, recent view or
    affinity computes anew. Consent is not the cache's business: the caller checks it on
    the profile it reads for every request.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._snapshot: RecoSnapshot | None = None
        self._lists: OrderedDict[tuple[str, int], tuple[Context, list[Recommendation]]] = (
            OrderedDict()
        )

    def recommend(
        self, snapshot: RecoSnapshot, profile_id: str, pseudonym: str, context: Context, k: int
    ) -> list[Recommendation]:
        """``snapshot.recommender.recommend(pseudonym, context, k=k)``, computed at most once
        per snapshot, profile, context and ``k`` while kept."""
        if snapshot is not self._snapshot:
            self._lists.clear()
            self._snapshot = snapshot
        key = (profile_id, k)
        kept = self._lists.get(key)
        if kept is not None and kept[0] == context:
            self._lists.move_to_end(key)
            return kept[1]
        items = snapshot.recommender.recommend(pseudonym, context, k=k)
        if self.capacity:
            self._lists[key] = (context, items)
            self._lists.move_to_end(key)
            if len(self._lists) > self.capacity:
                self._lists.popitem(last=False)
        return items


def _k(request: Request) -> int | None:
    """The ``k`` query parameter (default 10), or None when it is not 1..100."""
    raw = request.query.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        return None
    return k if 1 <= k <= 100 else None
