"""Delayed campaign-response labels, decided in event time, the same whatever the order.

An exposure is an email opened (its ``campaign_id``) or an offer shown (its
``offer_id``) by an identified customer. Its label is 1 when the same customer clicks
that email (``email_clicked``, same campaign) or redeems that offer (``offer_redeemed``,
same offer) within ``window`` of it, else 0. It is decided once the watermark (the
oldest partition's newest event time) has passed the end of the window plus
``lateness``: every event it reads is applied by then, on whichever topic it came. The
exposures wait on the profile (``Profile.campaign``), decided oldest first, so the
customer's tally (a feature of the next) moves in exposure time order.

Consent (README: consent matrix): an exposure is labelled only if analytics is not
withheld by then; a refusal made before an exposure's decision time drops it unlabelled,
and once the watermark passes the refusal the customer's campaign state goes.

>>> from cdpulse.profile.model import Profile
>>> labeler = CampaignLabeler(window=2 * DAY, lateness=0)
>>> p = Profile(id="C-1", customer_id="C-1")
>>> labeler.observe(p, "email_opened", "nl-1", 0)
>>> labeler.observe(p, "email_clicked", "nl-1", DAY)
>>> labeler.observe(p, "offer_shown", "welcome10", DAY)
>>> examples, due = labeler.decide(p, 2 * DAY)
>>> [(e.exposed_at // DAY, e.offer, e.label) for e in examples], due // DAY
([(0, False, 1)], 3)
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass

import msgspec

from cdpulse.models.campaign.features import campaign_features, vector
from cdpulse.privacy.consent import allows, withheld_at
from cdpulse.profile import limits
from cdpulse.profile.model import Exposures, Profile
from cdpulse.profile.windows import DAY, MINUTE
from cdpulse.settings import Settings

_JSON = msgspec.json.Encoder()

EXPOSURES = {"email_opened": 0, "offer_shown": 1}  # event type -> the key's low bit
RESPONSES = {"email_clicked": 0, "offer_redeemed": 1}


def campaign_key(campaign_id: str, offer: int) -> int:
    """The key of a campaign (``offer`` 0) or offer (1): its id's CRC-32, the low bit
    saying which."""
    return (zlib.crc32(campaign_id.encode()) & ~1) | offer


@dataclass(frozen=True, slots=True)
class CampaignExample:
    """A labelled exposure: its features as of the day before, decided at ``label_at``."""

    profile_id: str
    exposed_at: int
    key: int
    label_at: int
    label: int
    features: list[float]

    @property
    def offer(self) -> bool:
        return bool(self.key & 1)

    def to_json(self, profile_id: str | None = None) -> bytes:
        """The JSON of the example, under ``profile_id`` when given (its pseudonym: what
        the training topics carry) instead of its own."""
        return _JSON.encode(
            {
                "profile_id": self.profile_id if profile_id is None else profile_id,
                "exposed_at": self.exposed_at,
                "key": self.key,
                "label_at": self.label_at,
                "label": self.label,
                "features": self.features,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> CampaignExample:
        return cls(**json.loads(raw))

    @property
    def order(self) -> tuple[int, str, int, int]:
        """The training order: by decision time, then customer, exposure and campaign."""
        return (self.label_at, self.profile_id, self.exposed_at, self.key)


def merge_exposures(profile: Profile, other: Profile) -> None:
    """Add a merged customer's exposures and tally to ``profile``'s."""
    theirs = other.campaign
    if theirs is None:
        return
    mine = profile.campaign
    if mine is None:
        mine = profile.campaign = Exposures()
    mine.pending = sorted(set(mine.pending) | set(theirs.pending))[: limits.EXPOSURES_KEPT]
    mine.emails += theirs.emails
    mine.clicked += theirs.clicked
    mine.offers += theirs.offers
    mine.redeemed += theirs.redeemed


@dataclass(frozen=True, slots=True)
class CampaignLabeler:
    """Records exposures and responses on the profile and decides their labels."""

    window: int = 7 * DAY
    lateness: int = 5 * MINUTE

    @classmethod
    def from_settings(cls, settings: Settings) -> CampaignLabeler:
        return cls(
            window=int(settings.campaign_response_days * DAY),
            lateness=int(settings.churn_lateness_seconds * 1000),
        )

    def observe(
        self,
        profile: Profile,
        event_type: str,
        campaign_id: str,
        at: int,
        dropped: Counter[str] | None = None,
    ) -> None:
        """Record an identified customer's exposure, or mark the waiting exposures to the
        same campaign it responds to (at or after them, within the window).

        An exposure is one per campaign and window: the same email or offer again within
        the window of its first showing is that exposure still; past
        ``limits.EXPOSURES_KEPT`` in one window, more are not recorded (counted).

        A response shares its exposure's topic and key (the customers topic, the
        customer's id), so it never arrives before it; and the exposure is still waiting,
        for the watermark has not passed the response yet.
        """
        offer = EXPOSURES.get(event_type)
        if offer is not None:
            if not allows(profile, "analytics"):
                return  # it would be dropped when decided: the refusal came before it
            state = profile.campaign
            if state is None:
                state = profile.campaign = Exposures()
            key = campaign_key(campaign_id, offer)
            # Every exposure within a window before this one is still waiting (its label
            # needs the watermark past this one's time), and exposures arrive in time
            # order: what is recorded does not depend on when labels were decided.
            recent = [k for t, k, _ in state.pending if t > at - self.window]
            if key in recent:
                return  # shown again while the first showing's window is open: one exposure
            if len(recent) >= limits.EXPOSURES_KEPT:
                if dropped is not None:
                    dropped[limits.counted(limits.CAMPAIGN_EXPOSURES)] += 1
                return
            state.pending = sorted([*state.pending, (at, key, 0)])
            return
        kind = RESPONSES.get(event_type)
        state = profile.campaign
        if kind is None or state is None or not state.pending:
            return
        key = campaign_key(campaign_id, kind)
        window = self.window
        state.pending = [
            (t, k, 1 if k == key and t <= at <= t + window else r) for t, k, r in state.pending
        ]

    def decide(self, profile: Profile, watermark: int) -> tuple[list[CampaignExample], int | None]:
        """The examples now decidable, oldest exposure first, and when the next one is."""
        state = profile.campaign
        if state is None:
            return [], None
        refused = withheld_at(profile, "analytics")
        pending = state.pending
        if refused is None:  # the common case, once per changed profile: nothing due yet
            due = pending[0][0] + self.window + self.lateness if pending else None
            if due is None or watermark < due:
                return [], due
        out: list[CampaignExample] = []
        kept: list[tuple[int, int, int]] = []
        for at, key, responded in pending:
            decided = at + self.window + self.lateness
            if refused is not None and decided > refused:
                continue  # analytics withheld before it was decided: never labelled
            if watermark < decided or kept:
                kept.append((at, key, responded))
                continue
            x = campaign_features(profile, at, offer=bool(key & 1))
            out.append(CampaignExample(profile.id, at, key, decided, responded, vector(x)))
            state.count(bool(key & 1), responded)
        state.pending = kept
        if refused is not None and watermark >= refused:
            profile.campaign = None  # every label decidable by the refusal is decided
            return out, None
        due = kept[0][0] + self.window + self.lateness if kept else None
        if refused is not None and (due is None or refused < due):
            due = refused
        return out, due
