"""Delayed churn labels, decided in event time, the same whatever the arrival order.

Every day within ``horizon`` of a customer's last activity is a snapshot (one every
``interval``): the features as of the end of that day, labelled 0 when the customer is
active again within ``horizon`` after it, 1 when not. A label is decided only once the
watermark (the oldest partition's newest event time) has passed every event time the
decision reads, plus ``lateness``; from then on the day buckets it reads no longer
change. So the worker, ``cdpulse evaluate`` and a replay label the same snapshots with
the same features and labels, at the same event times, and nothing reads the wall clock.

>>> from cdpulse.profile.model import Profile
>>> labeler = ChurnLabeler(horizon=2 * DAY, interval=DAY, lateness=0)
>>> p = Profile(id="C-1", churn_days={0: [1, 0, 0.0]})   # active on day 0 only
>>> examples, due = labeler.decide(p, 10 * DAY, lambda day: [day / DAY])
>>> [(e.snapshot_at // DAY, e.label) for e in examples], due
([(0, 1), (1, 1), (2, 1)], None)
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from cdpulse.models.churn.features import active_days
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY, MINUTE
from cdpulse.settings import Settings

_JSON = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Example:
    """A labelled snapshot: features at the end of day ``snapshot_at``, decided at ``label_at``."""

    profile_id: str
    snapshot_at: int
    label_at: int
    label: int
    features: list[float]

    def to_json(self, profile_id: str | None = None) -> bytes:
        """The JSON of the example, under ``profile_id`` when given (its pseudonym: what
        the training topics carry) instead of its own."""
        # By hand: ``dataclasses.asdict`` deep-copies the features, ~15 µs an example;
        # msgspec: the same values as ``json.dumps`` (floats may be spelt otherwise), ~5x
        # faster.
        return _JSON.encode(
            {
                "profile_id": self.profile_id if profile_id is None else profile_id,
                "snapshot_at": self.snapshot_at,
                "label_at": self.label_at,
                "label": self.label,
                "features": self.features,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Example:
        return cls(**json.loads(raw))

    @property
    def order(self) -> tuple[int, str, int]:
        """The training order: by decision time, then customer and day."""
        return (self.label_at, self.profile_id, self.snapshot_at)


@dataclass(frozen=True, slots=True)
class ChurnLabeler:
    """Decides the labels of a profile's snapshot days; progress lives in the profile."""

    horizon: int = 30 * DAY
    interval: int = DAY
    lateness: int = 5 * MINUTE

    @classmethod
    def from_settings(cls, settings: Settings) -> ChurnLabeler:
        return cls(
            horizon=int(settings.churn_horizon_days * DAY),
            interval=settings.churn_snapshot_days * DAY,
            lateness=int(settings.churn_lateness_seconds * 1000),
        )

    def decide(
        self, profile: Profile, watermark: int, features: Callable[[int], list[float]]
    ) -> tuple[list[Example], int | None]:
        """The examples now decidable, and when the next one may be (None: on activity).

        After an analytics refusal (``churn_refused``) only the labels decidable by its
        event time are decided, from the days before it; once the watermark has passed
        it, those days go (``rules.minimise`` kept them for this).
        """
        refused = profile.churn_refused
        if refused is None:
            return self._decide(profile, watermark, features)
        out, due = self._decide(profile, min(watermark, refused), features)
        if watermark < refused:
            return out, refused if due is None or due > refused else due
        cut = (refused // DAY) * DAY
        profile.churn_days = {d: cell for d, cell in profile.churn_days.items() if d >= cut}
        profile.churn_refused = None
        if not profile.churn_days:
            profile.churn_first_seen = None
            return out, None
        # Analytics granted again since: its new days are labelled as any others.
        more, due = self._decide(profile, watermark, features)
        return out + more, due

    def _decide(
        self, profile: Profile, watermark: int, features: Callable[[int], list[float]]
    ) -> tuple[list[Example], int | None]:
        days = active_days(profile)
        out: list[Example] = []
        if not days:
            return out, None
        done = profile.churn_labelled_through
        day = days[0] if done < 0 else max(done + DAY, days[0])
        while True:
            last = days[bisect.bisect_right(days, day) - 1]  # latest active day <= day
            following = bisect.bisect_right(days, day)
            after = days[following] if following < len(days) else None
            if day - last > self.horizon:
                # Churned already: no snapshots until the customer comes back.
                if after is None:
                    return out, None
                day = after
                continue
            if (day // DAY) % (self.interval // DAY):
                day += DAY
                continue
            if after is not None and after - day <= self.horizon:
                label, decided = 0, after + DAY + self.lateness
            else:
                label, decided = 1, day + DAY + self.horizon + self.lateness
            if watermark < decided:
                return out, decided
            out.append(Example(profile.id, day, decided, label, features(day)))
            profile.churn_labelled_through = day
            day += DAY
