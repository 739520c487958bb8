"""Prequential evaluation of send time against a global best hour: ``cdpulse evaluate send-time``.

Events are replayed in file (event-time) order with the real profile rules. At each email
open of a known customer, before the open is applied, the customer's send window
(``models.send_time``, read as the segments read it: at the profile's newest event) is
asked whether the open falls inside it, in the customer's own time: the worker's own
count (``observe_open``, ``cdpulse_send_time_opens_total`` on /metrics). The baseline is the
one hour a shop without per-customer timing would pick: the 3-hour window holding most
of all customers' opens so far. Both are scored on the same opens, those the customer's
profile could time; hit rate = opens inside the window / opens scored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.replayed import REPLAY_NOW
from cdpulse.models.send_time import best_hour, in_window, observe_open
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile
from cdpulse.profile.send_hours import hour_of_week, local_offset


@dataclass(frozen=True, slots=True)
class SendTimeResult:
    """Hit rates of the customers' own windows and of the global best window."""

    events: int
    rejected: int
    opens: int  # email opens of known customers
    scored: int  # of those, opens the customer's profile had a window for
    model_hit_rate: float
    baseline_hit_rate: float
    baseline_hour: int | None  # the global best hour at the end of the replay

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    events: Iterable[Mapping[str, Any]],
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendTimeResult:
    """Replay ``events`` and score every timed email open (see the module docstring)."""
    rules = rules or Rules()
    profiles: dict[str, Profile] = {}
    aliases: dict[str, str] = {}
    opens_by_hour = [0] * 24
    counts: Counter[str] = Counter()
    count = rejected = opens = baseline_hits = 0
    for raw in events:
        count += 1
        if progress is not None:
            progress(1)
        event = validate(dict(raw), now=REPLAY_NOW)
        if isinstance(event, Rejection):
            rejected += 1
            continue
        if event.customer_id is not None and event.anonymous_id is not None:
            aliases.setdefault(event.anonymous_id, event.customer_id)
        key = event.customer_id or aliases.get(event.key, event.key)
        profile = profiles.setdefault(key, new_profile(key))
        if event.type == "email_opened" and event.customer_id is not None:
            opens += 1
            hour = hour_of_week(event.at + local_offset(event.timestamp)) % 24
            timed = counts.total()
            observe_open(profile, event.at, event.timestamp, counts)  # the worker's count
            if counts.total() > timed:  # the profile had a window: the baseline's turn
                # before any open, the baseline has no hour: a miss
                baseline_hits += any(opens_by_hour) and in_window(hour, best_hour(opens_by_hour))
            opens_by_hour[hour] += 1
        apply(profile, event, rules)
    scored, model_hits = counts.total(), counts["send_time_hit"]
    return SendTimeResult(
        events=count,
        rejected=rejected,
        opens=opens,
        scored=scored,
        model_hit_rate=round(model_hits / scored, 4) if scored else 0.0,
        baseline_hit_rate=round(baseline_hits / scored, 4) if scored else 0.0,
        baseline_hour=best_hour(opens_by_hour) if any(opens_by_hour) else None,
    )
