"""Deciding trigger situations once the watermark has passed them: pure, in event time.

At watermark ``w`` every event up to ``w`` has been applied, so a cart whose deadline is
at or before ``w`` is known to be abandoned or not, consent at a firing's time is known,
and an attribution window closed by ``w`` is known to have converted or not. Each
situation gets one outcome, saved with the profile, so it is decided exactly once:

    fired       published to the triggers topic, with an offer when the rule has some
    holdout     the rule's control share: nothing is sent, the outcome is measured
    no_consent  a marketing rule and no marketing consent at the firing's time
    cooldown    the same rule fired for this customer too recently
    capped      the customer's marketing frequency cap is reached
    gated       the rule is gated by a model whose inputs were broken at the firing's
                time (``monitors/health.py``; the reason says which input): the score
                is not trusted, so nothing is sent and nothing counts towards caps
    suppressed  a churn crossing scored by a degraded model (``models/health.py``),
                its rule's ``on_degraded: suppress``: dropped, as if never crossed
    held        the same with ``on_degraded: hold``: nothing is sent, and the risk is
                forgotten, so the customer's next score decides again

A crossing its rule's fallback condition made while the model was degraded is decided
as usual (``Decision.model_gate`` says ``fallback``). Each of the three is noted in the
watch's ``model_gated`` with the model's reasons.

With a ``Gate`` (the worker's; a replay without one gates nothing), a gated rule's
situation waits (is *held*, still pending) until the watermark passes the end of its
event-time hour plus ``SETTLE`` and every partition is judged through that hour; then
it is gated or decided as usual. A churn score gated off is forgotten, so the next score
from healthy inputs can cross the threshold and fire again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cdpulse.monitors.health import HOUR, Gate
from cdpulse.offers.choice import Chooser, OfferChoice
from cdpulse.profile.watch import Exposure, Pending, Watch
from cdpulse.triggers.caps import blocked, forget
from cdpulse.triggers.rules import CartAbandoned, ChurnRisk, TriggerConfig, TriggerRule
from cdpulse.triggers.situations import cart_deadline, rule_of


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one situation."""

    trigger_id: str
    customer_id: str
    pending: Pending
    outcome: str
    choice: OfferChoice | None = None
    reason: str = ""  # why it was gated
    # what a degraded churn model made of it: suppress, hold or fallback ("": nothing)
    model_gate: str = ""


@dataclass(frozen=True, slots=True)
class Attribution:
    """A closed attribution window: did the customer order or redeem after the firing?"""

    customer_id: str
    exposure: Exposure
    converted: bool


def trigger_id(rule: str, customer_id: str, key: str) -> str:
    """The firing's id: the same situation always gets the same id, on any replay."""
    return f"{rule}:{customer_id}:{key}"


def in_holdout(trigger: str, share: float) -> bool:
    """Whether ``trigger`` falls in the holdout ``share``: a stable hash, not a coin."""
    digest = hashlib.blake2b(trigger.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def has_marketing_consent(consent: dict[str, tuple[int, bool]], at: int) -> bool:
    """Granted, and granted at or before ``at``: the newest known answer is what counts."""
    answer = consent.get("marketing")
    return answer is not None and answer[1] and answer[0] <= at


def decide(
    watch: Watch,
    customer_id: str,
    consent: dict[str, tuple[int, bool]],
    watermark: int,
    config: TriggerConfig,
    choose: Chooser,
    gate: Gate | None = None,
) -> tuple[list[Decision], list[Attribution]]:
    """Decide everything in ``watch`` due at ``watermark``, updating ``watch`` in place
    (a rule gated by a model is decided from ``gate``'s flags)."""
    _expire_carts(watch, watermark, config)
    due = sorted(
        (p for p in watch.pending if decidable(p, watermark, config, gate)),
        key=lambda p: (p.at, p.rule),
    )
    watch.pending = [p for p in watch.pending if not decidable(p, watermark, config, gate)]
    marketing = {r.name for r in config.rules if r.marketing}
    decisions = []
    for pending in due:
        rule = config.named(pending.rule)
        if rule is None:
            continue  # the rule was removed from the configuration since
        trigger = trigger_id(rule.name, customer_id, pending.key)
        reason = gated(rule.gated_by, pending.at, config, gate) if gate is not None else None
        if reason is not None:
            watch.gated = [*watch.gated, (rule.name, pending.at, reason)][-GATED_KEPT:]
            if isinstance(rule, ChurnRisk):
                watch.risk = None  # the next score, from healthy inputs, may cross again
            decisions.append(Decision(trigger, customer_id, pending, "gated", reason=reason))
            continue
        action = model_gate(rule, pending)
        if action:
            why = f"churn model degraded: {'; '.join(pending.degraded)}"
            noted = (rule.name, pending.at, action, why)
            watch.model_gated = [*watch.model_gated, noted][-GATED_KEPT:]
        if action in DROPPED:
            if action == "hold":
                watch.risk = None  # the next score decides again
            decisions.append(
                Decision(trigger, customer_id, pending, DROPPED[action], model_gate=action)
            )
            continue
        outcome = blocked(
            watch.fired,
            rule.name,
            pending.at,
            cooldown=rule.cooldown,
            caps=config.caps,
            marketing=marketing,
        )
        if rule.marketing and not has_marketing_consent(consent, pending.at):
            outcome = "no_consent"
        choice = None
        if outcome is None:
            outcome = "holdout" if in_holdout(trigger, rule.holdout) else "fired"
            if outcome == "fired" and rule.offers:
                choice = choose(rule.name, list(rule.offers), trigger)
            # The holdout counts towards caps and cooldowns too, so both groups are
            # treated alike apart from the message itself.
            watch.fired.append((rule.name, pending.at))
            watch.exposures.append(
                Exposure(
                    rule.name,
                    trigger,
                    pending.at,
                    pending.at + rule.attribution,
                    holdout=outcome == "holdout",
                    offer=choice.offer if choice else "",
                    propensity=choice.propensity if choice else 1.0,
                    features=dict(choice.features) if choice else {},
                )
            )
        decisions.append(
            Decision(trigger, customer_id, pending, outcome, choice, model_gate=action)
        )
    if due:
        watch.fired = forget(watch.fired, max(p.at for p in due), config.longest_memory)
    return decisions, _attribute(watch, customer_id, watermark)


GATED_KEPT = 8  # the newest gated situations a customer's watch shows
DROPPED = {"suppress": "suppressed", "hold": "held"}  # on_degraded -> outcome


def model_gate(rule: TriggerRule, pending: Pending) -> str:
    """What ``rule`` does with ``pending``, a crossing scored by a degraded model: its
    ``on_degraded`` (``fallback`` when the fallback made it), or "" (not degraded)."""
    if not pending.degraded or not isinstance(rule, ChurnRisk) or not rule.model_gated:
        return ""
    # A crossing the score made, whatever the rule says now: its fallback never read it.
    if pending.fallback:
        return "fallback"
    return "hold" if rule.on_degraded == "fallback" else rule.on_degraded


def gated(models: list[str], at: int, config: TriggerConfig, gate: Gate) -> str | None:
    """Why a situation at ``at`` of a rule gated by ``models`` is suppressed, or None."""
    for model in models:
        reason = gate.reason(model, config.gates[model], at)
        if reason is not None:
            return f"{model}:{reason}"
    return None


def _gated_rule(pending: Pending, config: TriggerConfig) -> bool:
    rule = config.named(pending.rule)
    return rule is not None and bool(rule.gated_by)


def due_at(pending: Pending, config: TriggerConfig, gate: Gate | None = None) -> int:
    """When ``pending`` is next looked at: at its time, or (its rule gated, a gate given)
    once its hour is judged everywhere."""
    if gate is None or not _gated_rule(pending, config):
        return pending.at
    return gate.due(pending.at)


def decidable(pending: Pending, watermark: int, config: TriggerConfig, gate: Gate | None) -> bool:
    """Whether ``pending`` is decided at ``watermark`` (else held, still pending)."""
    if due_at(pending, config, gate) > watermark:
        return False
    return gate is None or not _gated_rule(pending, config) or gate.settled_at(pending.at)


def held_for(watch: Watch, watermark: int, config: TriggerConfig, gate: Gate | None) -> int | None:
    """The earliest event-time hour a situation due at ``watermark`` is held for (its rule
    gated, that hour not judged on every partition yet), or None.

    Its due time has passed, so no later event is needed to decide it: only the gate
    judging that hour, which may come after the watermark stopped moving (the batch that
    read the gate began before the write that made the hour judged).
    """
    if gate is None:
        return None
    hours = [
        p.at // HOUR
        for p in watch.pending
        if _gated_rule(p, config)
        and due_at(p, config, gate) <= watermark
        and not gate.settled_at(p.at)
    ]
    return min(hours, default=None)


def next_due(watch: Watch, config: TriggerConfig, gate: Gate | None = None) -> int | None:
    """When the watch next has something to decide (epoch ms), or None."""
    pending = [due_at(p, config, gate) for p in watch.pending]
    times = pending + [e.until for e in watch.exposures]
    if rule_of(config, CartAbandoned) is not None:
        times += [cart_deadline(c, config) for c in watch.carts if not c.decided]
    return min(times, default=None)


def _expire_carts(watch: Watch, watermark: int, config: TriggerConfig) -> None:
    rule = rule_of(config, CartAbandoned)
    if rule is None:
        return
    for cart in watch.carts:
        deadline = cart_deadline(cart, config)
        if cart.decided or deadline > watermark:
            continue
        cart.decided = True
        # An order that arrived (on its own topic) after a later add still closes it.
        ordered = any(cart.opened_at <= t <= deadline for t in watch.orders)
        quantity = sum(cart.items.values())
        if cart.closed or ordered or quantity <= 0:
            continue
        minutes = round(rule.after_minutes)
        reason = f"{quantity} items in the cart and no checkout for {minutes} minutes"
        watch.pending.append(
            Pending(rule.name, cart.opened_by, deadline, [reason], sorted(cart.items))
        )


def _attribute(watch: Watch, customer_id: str, watermark: int) -> list[Attribution]:
    closed = [e for e in watch.exposures if e.until <= watermark]
    watch.exposures = [e for e in watch.exposures if e.until > watermark]
    out = []
    for exposure in closed:
        ordered = any(exposure.at < t <= exposure.until for t in watch.orders)
        redeemed = any(exposure.at < t <= exposure.until for t, _ in watch.redeemed)
        out.append(Attribution(customer_id, exposure, ordered or redeemed))
    return out
