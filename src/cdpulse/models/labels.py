"""Delayed churn labels, decided in event time.

A snapshot of a customer's features is taken at an event (at most one per
``interval``). It waits for its label: 0 as soon as the customer comes back, active
again at least ``interval`` and at most ``horizon`` after the snapshot (the rest of the
same visit says nothing); 1 once the watermark passes the snapshot time plus
``horizon`` with no return. Both decisions read event times only, so a replay of the same events
labels the same snapshots the same way; nothing here looks at the wall clock.

>>> from cdpulse.profile.model import Profile
>>> labeler = ChurnLabeler(horizon=30 * DAY, interval=DAY)
>>> p = Profile(id="C-1")
>>> labeler.on_activity(p, 0, lambda: [1.0])
[]
>>> labeler.expire(p, watermark=30 * DAY).label
1
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY

# Shown to the customer by the shop, not done by the customer: not a sign of life.
NOT_ACTIVITY = frozenset({"offer_shown"})


@dataclass(frozen=True, slots=True)
class Example:
    """A labelled snapshot: the features at ``snapshot_at``, the label known at ``label_at``."""

    profile_id: str
    snapshot_at: int
    label_at: int
    label: int
    features: list[float]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Example:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class ChurnLabeler:
    """Takes snapshots and labels them; the state lives in the profile's ``churn_*`` fields."""

    horizon: int = 30 * DAY
    interval: int = DAY

    def on_activity(
        self, profile: Profile, t: int, features: Callable[[], list[float]]
    ) -> list[Example]:
        """The customer was active at ``t``: label the waiting snapshot, maybe take one."""
        out: list[Example] = []
        pending = profile.churn_pending_at
        if pending is not None and t >= pending + self.interval:
            if t <= pending + self.horizon:
                out.append(self._label(profile, 0, t))
            else:  # the horizon passed before this activity: churned, then came back
                out.append(self._label(profile, 1, pending + self.horizon))
        last = profile.churn_snapshot_at
        if profile.churn_pending_at is None and (last < 0 or t >= last + self.interval):
            profile.churn_pending_at = t
            profile.churn_pending = features()
            profile.churn_snapshot_at = t
        return out

    def expire(self, profile: Profile, watermark: int) -> Example | None:
        """Label 1 when the horizon of the waiting snapshot passed with no activity."""
        pending = profile.churn_pending_at
        if pending is None or pending + self.horizon > watermark:
            return None
        return self._label(profile, 1, pending + self.horizon)

    def due_at(self, profile: Profile) -> int | None:
        """When the waiting snapshot expires, if one waits."""
        pending = profile.churn_pending_at
        return None if pending is None else pending + self.horizon

    def _label(self, profile: Profile, label: int, at: int) -> Example:
        assert profile.churn_pending_at is not None
        example = Example(profile.id, profile.churn_pending_at, at, label, profile.churn_pending)
        profile.churn_pending_at = None
        profile.churn_pending = []
        return example
