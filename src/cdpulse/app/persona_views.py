"""HTTP view of the personas (scope ``read``): ``GET /v1/personas`` and the dashboard's
``GET /v1/dashboard/personas``.

It serves the newest persona snapshot the learner published (``app/learner.py``), which
the api reloads with the other snapshots every ``CDPULSE_MODEL_REFRESH_SECONDS``: each
persona's id, size, share of the newest points learned and of the distinct customers
among them, description, centre and a few members, by pseudonym only (the ids the
training topic carries, never a customer id).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from cdpulse.models.personas import FEATURES
from cdpulse.models.personas_learner import PersonaState

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.store.models import SnapshotStore

NOT_YET = (
    "no personas yet: the learner seeds them once CDPULSE_PERSONA_WARMUP examples (a "
    "customer's day with an order, decided once every partition is past it) have come"
)


def personas_document(state: PersonaState) -> dict[str, Any]:
    """What ``GET /v1/personas`` answers for a published snapshot with personas."""
    view = state.view
    assert view is not None
    measured = state.quality
    shares = measured.shares if measured is not None else {}
    personas = []
    for persona in view.personas:
        # The centre back in the features' own units (each is log1p of a count or money).
        typical = {
            f: round(math.expm1(view.mean[j] + persona.centre[f] * view.scale[j]), 2)
            for j, f in enumerate(FEATURES)
        }
        personas.append(
            {
                "id": persona.id,
                "size": persona.size,
                "share": shares.get(persona.id),
                "customer_share": state.customer_shares.get(persona.id, 0.0),
                "description": persona.description,
                "centroid": persona.centre,
                "typical": typical,
                "members": state.members.get(persona.id, []),
            }
        )
    return {
        "model_version": state.version,
        "examples": state.model.n,
        "silhouette": measured.silhouette if measured is not None else None,
        "stability": measured.stability if measured is not None else None,
        "points_measured": measured.points if measured is not None else 0,
        "personas": personas,
    }


def register_persona_views(
    app: faust.App, store: SnapshotStore[PersonaState], guarded: Guard
) -> None:
    """Add the personas route to the app."""

    @app.page("/v1/personas")
    class PersonasView(View):
        """The personas: sizes, shares, words, centres and a few members."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            state = store.get()
            if state is None or state.view is None:
                return self.json({"error": NOT_YET}, status=404)
            return self.json(personas_document(state))

    @app.page("/v1/dashboard/personas")
    class DashboardPersonasView(View):
        """The same for the dashboard's panel, a 200 with ``pending`` before there are any
        (a 404 would be an error on the page's console)."""

        @guarded("read")
        async def get(self, request: Request) -> Response:
            state = store.get()
            if state is None or state.view is None:
                return self.json({"personas": [], "pending": NOT_YET})
            return self.json({**personas_document(state), "pending": None})
