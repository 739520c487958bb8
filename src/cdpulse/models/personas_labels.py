"""Persona training examples, decided in event time, the same whatever the order.

One example per day a customer ordered on (identified orders: ``Profile.churn_days``):
the customer's ``persona_features`` as of the end of that day. It is decided once the
watermark (the oldest partition's newest event time) has passed the end of the day plus
``lateness``: every event it reads is applied by then, on whichever topic it came, and
the days it reads no longer change. Days are decided oldest first; the profile keeps
the last one decided (``Profile.persona_through``), so the worker, ``cdpulse evaluate``
and a replay decide the same examples, with the same numbers, at the same event times.
A day rather than an order: two orders of one day are one customer state, and the
example of the second would differ from the first only by what Kafka interleaved.

Consent (README: consent matrix): a day is learned from only if analytics is not
withheld by its decision time, as the campaign labels.

>>> from cdpulse.profile.model import Profile
>>> labeler = PersonaLabeler(lateness=0)
>>> days = {0: [2, 1, 30.0], 2 * DAY: [1, 1, 10.0]}
>>> p = Profile(id="C-1", churn_days=days, last_order_at=2 * DAY)
>>> examples, due = labeler.decide(p, 2 * DAY)
>>> [(e.day // DAY, e.label_at // DAY) for e in examples], due // DAY
([(0, 1)], 3)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgspec

from cdpulse.models.personas import FEATURES, persona_features
from cdpulse.models.reco_stream import Forget
from cdpulse.privacy.consent import withheld_at
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY, MINUTE
from cdpulse.settings import Settings

_JSON = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class PersonaExample:
    """A customer's persona features as of the end of ``day``, decided at ``label_at``."""

    profile_id: str
    day: int
    label_at: int
    features: list[float]

    def to_json(self, profile_id: str | None = None) -> bytes:
        """The JSON of the example, under ``profile_id`` when given (its pseudonym: what
        the training topics carry) instead of its own."""
        return _JSON.encode(
            {
                "profile_id": self.profile_id if profile_id is None else profile_id,
                "day": self.day,
                "label_at": self.label_at,
                "features": self.features,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> PersonaExample:
        return cls(**json.loads(raw))

    @property
    def order(self) -> tuple[int, str, int]:
        """The training order: by decision time, then customer and day."""
        return (self.label_at, self.profile_id, self.day)

    def x(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.features, strict=True))


def read_record(raw: bytes) -> PersonaExample | Forget:
    """One ``cdp.persona-training`` record: an example, or an erasure's ``Forget`` of a
    customer's pseudonym (the topic outlives an erasure; the learner must drop them)."""
    record = json.loads(raw)
    if isinstance(record, dict) and set(record) == {"forget"}:
        return Forget(str(record["forget"]))
    return PersonaExample(**record)


@dataclass(frozen=True, slots=True)
class PersonaLabeler:
    """Decides a profile's persona examples; progress lives in the profile."""

    lateness: int = 5 * MINUTE

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonaLabeler:
        return cls(lateness=int(settings.churn_lateness_seconds * 1000))

    def decide(self, profile: Profile, watermark: int) -> tuple[list[PersonaExample], int | None]:
        """The examples now decidable, oldest day first, and when the next one is."""
        through = profile.persona_through
        last = profile.last_order_at
        # Once per changed profile: without an order after the last day decided (any
        # order, a visitor's too, moves ``last_order_at``), there is nothing to decide.
        if last is None or last < through + DAY:
            return [], None
        days = sorted(s for s, cell in profile.churn_days.items() if cell[1] > 0 and s > through)
        refused = withheld_at(profile, "analytics")
        out: list[PersonaExample] = []
        for day in days:
            decided = day + DAY + self.lateness
            if watermark < decided:
                return out, decided
            if refused is None or decided <= refused:
                x = persona_features(profile, day)
                out.append(PersonaExample(profile.id, day, decided, [x[f] for f in FEATURES]))
            profile.persona_through = day
        return out, None
