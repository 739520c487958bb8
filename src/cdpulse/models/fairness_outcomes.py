"""Who each model and trigger rule selected, by group: the outcomes a fairness report reads.

* **churn**: every labelled example, with the score the model gave it before learning
  it (prequential, as its live quality is measured), selected when that score is at or
  above ``SELECTED_AT``, and its label; the customer's groups as their profile has them.
* **lifetime value**: every customer with orders, their expected value over the horizon,
  selected when it is in the top fifth (the high-value tier); no label.
* **each trigger rule**: every identified customer, selected when the rule fired for them
  (a message sent; holdouts are drawn at random, so they do not tilt a group); no label.
  In a replay the firings are the messages published; live, the firings each profile's
  trigger watch keeps (``watch.fired``: the recent ones its caps and cooldowns count).

Groups are read from each customer's profile as it is when the report is made, not as
it was at each decision: a customer who moved country since counts in the new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary, scored_inputs
from cdpulse.models.fairness import SELECTED_AT, Outcome, groups_of
from cdpulse.profile.model import Profile

TOP_SHARE = 0.2  # the high-value tier of lifetime value


def churn_outcomes(
    scored: Iterable[tuple[str, float, int]],
    profiles: Mapping[str, Profile],
    attributes: Sequence[str],
) -> list[Outcome]:
    """(profile id, score before learning, label) of each example whose customer's
    profile is known."""
    out = []
    for profile_id, score, label in scored:
        profile = profiles.get(profile_id)
        if profile is not None:
            groups = groups_of(profile, attributes)
            out.append(Outcome(groups, score >= SELECTED_AT, score, label))
    return out


def clv_outcomes(
    profiles: Mapping[str, Profile],
    snapshot: ClvSnapshot,
    as_of: int,
    horizon_days: float,
    attributes: Sequence[str],
) -> list[Outcome]:
    """Every customer with orders, valued by ``snapshot``; the top fifth selected."""
    customers = [
        (profile, summary)
        for profile in profiles.values()
        if (summary := OrderSummary.of(profile)) is not None
    ]
    rows = scored_inputs([s for _, s in customers], as_of, snapshot, horizon_days)
    if len(rows) != len(customers):  # a summary the models cannot read: none here
        return []
    values = [row[-1] for row in rows]
    cut = float(np.quantile(values, 1 - TOP_SHARE)) if values else 0.0
    return [
        Outcome(groups_of(profile, attributes), value >= cut, value)
        for (profile, _), value in zip(customers, values, strict=True)
    ]


def rule_outcomes(
    firings: Iterable[bytes],
    rules: Iterable[str],
    profiles: Mapping[str, Profile],
    attributes: Sequence[str],
) -> dict[str, list[Outcome]]:
    """Per rule, every identified customer and whether it fired for them; ``firings``:
    the trigger messages published (JSON)."""
    fired: dict[str, set[str]] = {rule: set() for rule in rules}
    for raw in firings:
        message = json.loads(raw)
        fired.setdefault(message["rule"], set()).add(message["customer_id"])
    customers = [p for p in profiles.values() if p.customer_id and p.customer_id == p.id]
    return {
        rule: [Outcome(groups_of(p, attributes), p.id in chosen) for p in customers]
        for rule, chosen in sorted(fired.items())
    }


def watched_rule_outcomes(
    rules: Iterable[str], profiles: Mapping[str, Profile], attributes: Sequence[str]
) -> dict[str, list[Outcome]]:
    """Per rule, every identified customer of ``profiles`` and whether their trigger
    watch holds a firing of it."""
    customers = [p for p in profiles.values() if p.customer_id and p.customer_id == p.id]
    fired = {
        p.id: {rule for rule, _ in p.watch.fired} if p.watch is not None else set()
        for p in customers
    }
    return {
        rule: [Outcome(groups_of(p, attributes), rule in fired[p.id]) for p in customers]
        for rule in sorted(rules)
    }
