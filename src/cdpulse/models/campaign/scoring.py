"""The campaign-response propensity a profile is served, scored on request.

Nothing is scored on the hot path (the stage only records exposures and decides labels,
``labels``): ``GET /v1/profiles/{id}/propensity`` and ``cdpulse evaluate campaign``
score with the newest snapshot when asked.
"""

from __future__ import annotations

from typing import Any

from cdpulse.models.campaign.features import campaign_features
from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.privacy.consent import allows
from cdpulse.profile.model import Profile


def propensity(
    profile: Profile, snapshot: CampaignSnapshot | None, offer: bool, as_of: int
) -> dict[str, Any] | None:
    """P(the customer responds to an email (or, ``offer``, an offer) exposed at
    ``as_of``), its reasons and the model version; None without personalization consent
    (README: consent matrix). Before any model: no score rather than a meaningless 0.5."""
    if not allows(profile, "personalization"):
        return None
    if snapshot is None or snapshot.model.examples == 0:
        return {"propensity": None, "reasons": [], "model_version": None}
    x = campaign_features(profile, max(as_of, profile.last_seen), offer)
    return {
        "propensity": round(snapshot.model.predict_proba(x), 4),
        "reasons": snapshot.model.reasons(x),
        "model_version": snapshot.version,
    }
