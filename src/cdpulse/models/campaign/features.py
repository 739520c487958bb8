"""The campaign-response feature vector of an exposure, and each feature in words.

An exposure is read as of the end of the day before it: the customer's identified
activity per day (``churn_days``, the buckets churn reads) up to then, and the tally of
their exposures decided before it. A past day's counts no longer change once the
watermark has passed it, and the tally moves only as exposures are decided, in exposure
time order, so the features of an exposure are the same live, in ``cdpulse evaluate``
and in a test. The day of the exposure itself is left out: an order in the session
that showed an offer is the redemption, not a sign of it.

>>> from cdpulse.profile.model import Exposures, Profile
>>> p = Profile(id="C-1", churn_days={0: [3, 1, 40.0]}, campaign=Exposures(offers=4, redeemed=1))
>>> x = campaign_features(p, 2 * DAY + 5, offer=True)
>>> x["days_since_last_order"], x["past_response_rate"], describe("past_response_rate", x)
(1.0, 0.25, 'redeemed 1 of 4 earlier offers')
"""

from __future__ import annotations

from cdpulse.models.churn import features as churn
from cdpulse.models.churn.features import Feature, churn_features
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY


def _responses(x: dict[str, float]) -> str:
    seen = x["past_exposures"]
    what = "offers" if x["offer"] else "newsletters"
    if not seen:
        return f"no earlier {what}"
    acted = "redeemed" if x["offer"] else "clicked"
    return f"{acted} {x['past_response_rate'] * seen:.0f} of {seen:.0f} earlier {what}"


_FROM_ACTIVITY = ("days_since_last_visit", "days_since_last_order", "active_days_30d", "orders_30d")

FEATURES: tuple[Feature, ...] = (
    Feature(
        "offer",
        "1 for an offer shown, 0 for an email opened",
        lambda x: "an offer on the site" if x["offer"] else "a newsletter opened",
    ),
    Feature(
        "past_exposures",
        "the customer's exposures of this kind labelled before this one",
        _responses,
    ),
    Feature(
        "past_response_rate",
        "the share of those the customer responded to (0 when none)",
        _responses,
    ),
    Feature(
        "days_since_last_visit",
        "days since the last day with any event (60 when longer ago)",
        lambda x: (
            "visited the day before"
            if x["days_since_last_visit"] == 0
            else f"no visit for {x['days_since_last_visit']:.0f} days"
        ),
    ),
    # the customer's activity, phrased as churn phrases it
    *(churn.FEATURES[churn.FEATURE_NAMES.index(name)] for name in _FROM_ACTIVITY[1:]),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}


def campaign_features(profile: Profile, at: int, offer: bool) -> dict[str, float]:
    """The features of an exposure at ``at`` (epoch ms): the profile as of the end of the
    day before, and the customer's tally so far."""
    day = (at // DAY) * DAY - DAY
    activity = churn_features(profile, day)
    tally = profile.campaign
    decided, responded = tally.tally(offer) if tally is not None else (0, 0)
    x = {
        "offer": 1.0 if offer else 0.0,
        "past_exposures": float(decided),
        "past_response_rate": responded / decided if decided else 0.0,
    }
    for name in _FROM_ACTIVITY:
        x[name] = activity[name]
    return x


def vector(x: dict[str, float]) -> list[float]:
    return [x[name] for name in FEATURE_NAMES]


def describe(name: str, x: dict[str, float]) -> str:
    """The plain-words reason for feature ``name`` at the values ``x``."""
    return _BY_NAME[name].phrase(x)
