"""Online churn inside the batch processor: labels decided in event time, and scores.

After the events of a batch are applied to a profile, the processor asks for the
snapshot days now decidable (see ``labels``) and stores the newest score; profiles
waiting for the watermark are scheduled, and ``expire`` decides them when it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cdpulse.models.churn.features import FEATURE_NAMES, churn_features
from cdpulse.models.churn.labels import ChurnLabeler, Example
from cdpulse.models.churn.model import LinearScorer, Snapshot
from cdpulse.models.clv.lifetime import ClvSnapshot, clv_view
from cdpulse.models.health import NO_MODEL, NOT_ASSESSED, ModelHealth
from cdpulse.models.next_purchase import next_purchase_view
from cdpulse.models.send_time import send_time_view
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.view import render
from cdpulse.profile.windows import DAY


class Enricher(Protocol):
    """What the batch processor asks of the online models."""

    def after_profile(
        self, profile: Profile, watermark: int, as_of: int
    ) -> tuple[list[Example], int | None]: ...

    def expire(self, profile: Profile, watermark: int) -> tuple[list[Example], int | None]: ...


def vector(x: dict[str, float]) -> list[float]:
    return [x[name] for name in FEATURE_NAMES]


class ChurnScoring:
    """Labels churn snapshots and scores profiles with the newest model."""

    def __init__(self, labeler: ChurnLabeler, snapshot: Callable[[], Snapshot | None]) -> None:
        self.labeler = labeler
        self.snapshot = snapshot
        self._compiled: tuple[Snapshot | None, LinearScorer | None] = (None, None)

    def scorer(self, snapshot: Snapshot) -> LinearScorer | None:
        """The compiled form of ``snapshot``, made once per snapshot."""
        if self._compiled[0] is not snapshot:
            self._compiled = (snapshot, LinearScorer.of(snapshot.model))
        return self._compiled[1]

    def expire(self, profile: Profile, watermark: int) -> tuple[list[Example], int | None]:
        """The examples of ``profile`` decidable at ``watermark``, and the next due time."""
        return self.labeler.decide(
            profile, watermark, lambda day: vector(churn_features(profile, day))
        )

    def after_profile(
        self, profile: Profile, watermark: int, as_of: int
    ) -> tuple[list[Example], int | None]:
        decided = self.expire(profile, watermark)
        if allows(profile, "personalization"):
            snapshot = self.snapshot()
            scorer = self.scorer(snapshot) if snapshot is not None else None
            score(profile, snapshot, as_of, scorer)
        else:  # no model scoring without personalization consent (README: consent matrix)
            profile.churn_risk, profile.churn_reasons, profile.churn_version = None, [], 0
            profile.churn_degraded = []
        return decided


def today(as_of: int) -> int:
    return (as_of // DAY) * DAY


def history(profile: Profile) -> Profile:
    """What a score reads of ``profile``: not the days an analytics refusal keeps only
    until its labels are decided (``ChurnLabeler.decide``)."""
    refused = profile.churn_refused
    if refused is None:
        return profile
    cut = today(refused)
    days = {d: cell for d, cell in profile.churn_days.items() if d >= cut}
    return Profile(id=profile.id, churn_days=days, churn_first_seen=min(days, default=None))


def score(
    profile: Profile, snapshot: Snapshot | None, as_of: int, scorer: LinearScorer | None = None
) -> None:
    """Store the churn risk of ``profile`` at ``as_of`` and its reasons (with ``scorer``,
    the snapshot's compiled form, when it has one)."""
    if snapshot is None or snapshot.model.examples == 0:
        return  # no model yet: no score rather than a meaningless 0.5
    x = churn_features(history(profile), today(as_of))
    if scorer is not None:
        risk, reasons = scorer.score(x)
    else:
        risk, reasons = snapshot.model.predict_proba(x), snapshot.model.reasons(x)
    profile.churn_risk = round(risk, 4)
    profile.churn_reasons = reasons
    profile.churn_version = snapshot.version
    found = health_of(snapshot)
    profile.churn_degraded = list(found.reasons) if found.degraded else []


def health_of(snapshot: Snapshot | None) -> ModelHealth:
    """The health ``snapshot`` was published with (``models/health.py``)."""
    if snapshot is None or snapshot.model.examples == 0:
        return NO_MODEL
    found = getattr(snapshot, "health", None)  # a stand-in snapshot may have none
    return found if isinstance(found, ModelHealth) else NOT_ASSESSED


def churn_view(profile: Profile, snapshot: Snapshot | None, as_of: int) -> dict[str, Any]:
    """The churn section of a profile: the risk now (at ``as_of``) and at its last event.

    ``quality`` is the health of the model the risk now was computed with (unknown, ok or
    degraded, with reasons); ``at_last_event.degraded``, the reasons the model of that
    score was degraded (empty: it was not).
    """
    view: dict[str, Any] = {
        "risk": None,
        "reasons": [],
        "model_version": None,
        "quality": health_of(snapshot).to_json(),
        "at_last_event": {
            "risk": profile.churn_risk,
            "reasons": list(profile.churn_reasons),
            "model_version": profile.churn_version or None,
            "degraded": list(profile.churn_degraded),
        },
    }
    if snapshot is not None and snapshot.model.examples:
        x = churn_features(history(profile), today(max(as_of, profile.last_seen)))
        view["risk"] = round(snapshot.model.predict_proba(x), 4)
        view["reasons"] = snapshot.model.reasons(x)
        view["model_version"] = snapshot.version
    return view


# Where no drift report is read (the BI export, which has no quality column).
CLV_UNASSESSED = ModelHealth("unknown", ("not assessed here: GET /v1/profiles/{id} says",))


def profile_document(
    profile: Profile,
    as_of: int,
    rules: Rules,
    snapshot: Snapshot | None,
    clv: ClvSnapshot | None = None,
    clv_horizon_days: float = 90.0,
    clv_health: ModelHealth = CLV_UNASSESSED,
) -> dict[str, Any]:
    """What ``GET /v1/profiles/{id}`` and ``cdpulse profile`` show: the profile and its scores.

    Without personalization consent there are no scores: ``churn``, ``clv``,
    ``next_purchase`` and ``best_send_window`` are None. ``clv.quality`` is ``clv_health``
    (the api's, judged from the newest drift report it loaded), or "no model yet".
    """
    document = render(profile, as_of, rules)
    if not allows(profile, "personalization"):
        document["churn"] = document["clv"] = None
        document["next_purchase"] = document["best_send_window"] = None
        return document
    as_of = max(as_of, profile.last_seen)
    document["churn"] = churn_view(profile, snapshot, as_of)
    document["clv"] = clv_view(profile, clv, as_of, clv_horizon_days)
    document["clv"]["quality"] = (NO_MODEL if clv is None else clv_health).to_json()
    purchases = clv.model.purchases if clv is not None else None
    document["next_purchase"] = next_purchase_view(profile, purchases, as_of)
    document["best_send_window"] = send_time_view(profile, as_of)
    return document
