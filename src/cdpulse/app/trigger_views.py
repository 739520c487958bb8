"""HTTP views of the trigger rules: their configuration, their uplift, a customer's watch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
import msgspec
from faust.web import Request, Response, View

from cdpulse.monitors.health import Gate
from cdpulse.offers.uplift import uplift
from cdpulse.profile.view import iso
from cdpulse.store.redis import RedisProfileStore
from cdpulse.triggers.decide import due_at, trigger_id

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.app.triggers import TriggerService


def register_trigger_views(
    app: faust.App, triggers: TriggerService, store: RedisProfileStore, guarded: Guard
) -> None:
    """Add ``/v1/rules``, ``/v1/rules/{name}/uplift`` and a profile's triggers to the app
    (scope ``read``)."""

    @app.page("/v1/profiles/{profile_id}/triggers")
    class WatchView(View):
        """Why a trigger did or did not fire: what the customer's watch holds."""

        @guarded("read")
        async def get(self, request: Request, profile_id: str) -> Response:
            profile = await store.get(profile_id)
            if profile is None:
                return self.json({"error": f"no profile for id {profile_id!r}"}, status=404)
            watch = profile.watch
            customer = profile.customer_id or profile.id
            if watch is None:
                return self.json(
                    {
                        "customer_id": customer,
                        "pending": [],
                        "recent": [],
                        "gated": [],
                        "model_gated": [],
                    }
                )
            return self.json(
                {
                    "customer_id": customer,
                    "pending": [
                        {
                            "trigger_id": trigger_id(p.rule, customer, p.key),
                            "at": iso(p.at),
                            # a gated rule's situation is held until its hour is judged
                            "decided_after": iso(due_at(p, triggers.config, Gate())),
                            "reasons": p.reasons,
                            # scored by a degraded churn model: why it was degraded
                            "model_degraded": p.degraded,
                        }
                        for p in watch.pending
                    ],
                    # fired or held out: what caps and cooldowns count
                    "recent": [{"rule": rule, "at": iso(at)} for rule, at in watch.fired],
                    "open_windows": [
                        {
                            "trigger_id": e.trigger_id,
                            "until": iso(e.until),
                            "holdout": e.holdout,
                            "offer": e.offer or None,
                        }
                        for e in watch.exposures
                    ],
                    "carts": msgspec.to_builtins(watch.carts),
                    # suppressed: a model the rule is gated by had broken inputs then
                    "gated": [
                        {"rule": rule, "at": iso(at), "reason": reason}
                        for rule, at, reason in watch.gated
                    ],
                    # scored by a degraded churn model: what the rule's on_degraded did
                    # (suppress, hold, fallback) and the model's reasons
                    "model_gated": [
                        {"rule": rule, "at": iso(at), "action": action, "reason": reason}
                        for rule, at, action, reason in watch.model_gated
                    ],
                }
            )

    @app.page("/v1/rules")
    class RulesView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            return self.json(triggers.config.model_dump(mode="json"))

    @app.page("/v1/rules/{name}/uplift")
    class UpliftView(View):
        @guarded("read")
        async def get(self, request: Request, name: str) -> Response:
            rule = triggers.config.named(name)
            if rule is None:
                known = ", ".join(r.name for r in triggers.config.rules) or "none"
                return self.json(
                    {"error": f"no trigger rule named {name!r}; configured rules: {known}"},
                    status=404,
                )
            report = uplift(name, await triggers.store.counts(name))
            report["holdout_share"] = rule.holdout
            return self.json(report)
