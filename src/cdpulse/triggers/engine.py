"""The trigger engine: the pipeline's hooks into each customer's watch. Pure.

While a batch is applied, ``observe`` and ``after_profile`` update each customer's watch
(saved with the profile) and say when it is next due; ``decide_due`` decides what the low
watermark has passed. The pipeline saves the watch with the same compare-and-set as the
profile, so a situation is decided by one writer, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cdpulse.contract.mirror import CustomEvent, Event
from cdpulse.monitors.health import Gate
from cdpulse.offers.choice import Chooser
from cdpulse.profile.limits import Dropped
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.watch import Watch
from cdpulse.segments.compiler import Values, modelled
from cdpulse.segments.fields import FieldValues
from cdpulse.triggers.decide import Attribution, Decision, decide, held_for, next_due
from cdpulse.triggers.rules import TriggerConfig
from cdpulse.triggers.situations import Transition, custom_event, entered, observe, scored


def no_offer(rule: str, offers: list[str], trigger: str) -> None:
    """The chooser when no bandit is wired: firings carry no offer."""
    return None


@dataclass(slots=True)
class Expired:
    """What one decision pass decided."""

    decisions: list[Decision] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    # the profile whose watch the pass changed, by customer: to save
    profiles: dict[str, Profile] = field(default_factory=dict)
    # the earliest hour a situation due is held for, until the gate judges it (None: none)
    held: int | None = None


class TriggerEngine:
    """Finds situations in applied events and decides them when the watermark passes."""

    def __init__(
        self,
        config: TriggerConfig,
        *,
        session_gap: int,
        lateness: int = 0,
        chooser: Callable[[Profile], Chooser] | None = None,
        gate: Callable[[], Gate | None] | None = None,
        rules: Rules | None = None,
    ) -> None:
        self.config = config
        self.session_gap = session_gap
        # A situation at t is decided once the watermark is past t + lateness: events up
        # to that much behind their partition's newest still count (a checkout sent late).
        self.lateness = lateness
        self.chooser = chooser or (lambda profile: no_offer)
        # The newest input-health flags the app read (monitors/health.py).
        self.gate = gate or (lambda: None)
        # The profile rules, for custom event rules' conditions on the profile's fields.
        self.rules = rules

    def observe(
        self, profile: Profile, event: Event, t: int, dropped: Dropped | None = None
    ) -> None:
        """An event was applied to ``profile`` at event time ``t`` (what the watch's caps
        drop is counted in ``dropped``)."""
        if event.customer_id is None or not self.config.rules:
            return
        if profile.watch is None:
            profile.watch = Watch()
        observe(profile.watch, event, t, self.config, self.session_gap, dropped)
        if type(event) is CustomEvent:
            for rule in self.config.custom(event.name):
                custom_event(profile.watch, event, t, rule, self._values(profile, event))

    def _fields(self, profile: Profile) -> Values:
        """The profile's fields, as a fallback condition reads them (none without rules)."""
        return FieldValues(profile, self.rules, None) if self.rules is not None else Values()

    def _values(self, profile: Profile, event: CustomEvent) -> Values:
        """What a custom event rule's condition reads: the profile's fields with the
        event applied (none without the profile rules), and the event's properties."""
        values = self._fields(profile)
        values["event"] = event.properties
        values.modelled = values.modelled and modelled(event.properties)
        return values

    def after_profile(self, profile: Profile, transitions: Iterable[Transition] = ()) -> int | None:
        """The batch is applied and scored; when is the watch next due?

        ``transitions`` are the customer's segment changes in this batch, from the segment
        stage or the RFM sweep (win-back fires on entering its segment).
        """
        entries = list(transitions) if profile.customer_id is not None else []
        if profile.watch is None and not entries:
            return None
        watch = profile.watch = profile.watch or Watch()
        key = f"v{profile.churn_version}@{profile.last_seen}"
        scored(
            watch,
            profile.churn_risk,
            profile.churn_reasons,
            profile.last_seen,
            key,
            self.config,
            profile.churn_degraded,
            lambda: self._fields(profile),
        )
        for transition in entries:
            entered(watch, transition, self.config)
        return next_due(watch, self.config, self.gate())

    def decide_due(self, profile: Profile, watermark: int) -> tuple[Expired, int | None]:
        """Decide what in ``profile``'s watch the low watermark (less the lateness) has
        passed; what was decided, and the watermark at which the watch is next decidable
        (its next due time plus the lateness: the profile's schedule).

        A gated situation due whose hour the gate has not judged everywhere stays pending,
        its schedule at or below ``watermark``: ``Expired.held`` names that hour, and a
        batch after the gate judges it decides it, event or not (the worker's idle timer).
        """
        watch = profile.watch
        if watch is None:
            return Expired(), None
        gate = self.gate()
        due = next_due(watch, self.config, gate)
        late = watermark - self.lateness
        if watermark <= 0 or due is None or due > late:
            return Expired(), self._decidable(due)
        customer = profile.customer_id or profile.id
        found, attributed = decide(
            watch, customer, profile.consent, late, self.config, self.chooser(profile), gate
        )
        # Something was due, so the watch changed even when nothing fired (a cart closed
        # in time): the profile is saved, or its schedule would keep the passed due time
        # and the profile would be polled, and its successors crowded out, forever.
        held = held_for(watch, late, self.config, gate)
        expired = Expired(found, attributed, {customer: profile}, held)
        return expired, self._decidable(next_due(watch, self.config, gate))

    def _decidable(self, due: int | None) -> int | None:
        # Scheduled at due + lateness: a profile polled earlier would find nothing to decide.
        return None if due is None else due + self.lateness
