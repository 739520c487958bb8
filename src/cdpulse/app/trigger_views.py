"""HTTP views of the trigger rules: their configuration and their measured uplift."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

from cdpulse.offers.uplift import uplift

if TYPE_CHECKING:
    from cdpulse.app.triggers import TriggerService


def register_trigger_views(app: faust.App, triggers: TriggerService) -> None:
    """Add ``/v1/rules`` and ``/v1/rules/{name}/uplift`` to the app."""

    @app.page("/v1/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            return self.json(triggers.config.model_dump(mode="json"))

    @app.page("/v1/rules/{name}/uplift")
    class UpliftView(View):
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
