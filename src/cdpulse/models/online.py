"""Online churn scoring inside the batch processor: snapshots, labels and scores.

The batch processor calls ``before_event`` for each new event of a profile (before the
event is applied, so a snapshot describes the customer up to that moment: its recency
is the gap since the previous activity, the quantity a score at read time measures
too), and ``after_profile`` once per saved profile to store the newest score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cdpulse.contract.events import Event
from cdpulse.models.churn import Snapshot
from cdpulse.models.features import FEATURE_NAMES, churn_features
from cdpulse.models.labels import NOT_ACTIVITY, ChurnLabeler, Example
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, to_millis
from cdpulse.profile.view import render


class Enricher(Protocol):
    """What the batch processor asks of the online models."""

    labeler: ChurnLabeler

    def before_event(self, profile: Profile, event: Event) -> list[Example]: ...

    def after_profile(self, profile: Profile, as_of: int) -> None: ...


def vector(x: dict[str, float]) -> list[float]:
    return [x[name] for name in FEATURE_NAMES]


class ChurnScoring:
    """Snapshots and labels churn examples, and scores profiles with the newest model."""

    def __init__(self, labeler: ChurnLabeler, snapshot: Callable[[], Snapshot | None]) -> None:
        self.labeler = labeler
        self.snapshot = snapshot

    def before_event(self, profile: Profile, event: Event) -> list[Example]:
        if event.type in NOT_ACTIVITY:
            return []
        t = to_millis(event)
        return self.labeler.on_activity(profile, t, lambda: vector(churn_features(profile, t)))

    def after_profile(self, profile: Profile, as_of: int) -> None:
        score(profile, self.snapshot(), as_of)


def score(profile: Profile, snapshot: Snapshot | None, as_of: int) -> None:
    """Store the churn risk of ``profile`` at ``as_of`` and its reasons."""
    if snapshot is None or snapshot.model.examples == 0:
        return  # no model yet: no score rather than a meaningless 0.5
    x = churn_features(profile, as_of)
    profile.churn_risk = round(snapshot.model.predict_proba(x), 4)
    profile.churn_reasons = snapshot.model.reasons(x)
    profile.churn_version = snapshot.version


def churn_view(profile: Profile, snapshot: Snapshot | None, as_of: int) -> dict[str, Any]:
    """The churn section of a profile: the risk now (at ``as_of``) and at its last event."""
    view: dict[str, Any] = {
        "risk": None,
        "reasons": [],
        "model_version": None,
        "at_last_event": {
            "risk": profile.churn_risk,
            "reasons": list(profile.churn_reasons),
            "model_version": profile.churn_version or None,
        },
    }
    if snapshot is not None and snapshot.model.examples:
        x = churn_features(profile, max(as_of, profile.last_seen))
        view["risk"] = round(snapshot.model.predict_proba(x), 4)
        view["reasons"] = snapshot.model.reasons(x)
        view["model_version"] = snapshot.version
    return view


def profile_document(
    profile: Profile, as_of: int, rules: Rules, snapshot: Snapshot | None
) -> dict[str, Any]:
    """What ``GET /v1/profiles/{id}`` and ``cdpulse profile`` show: the profile and its scores."""
    document = render(profile, as_of, rules)
    document["churn"] = churn_view(profile, snapshot, as_of)
    return document
