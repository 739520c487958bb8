"""Holdout evaluation of the next purchase: ``cdpulse evaluate next-purchase``.

Events are replayed in file order with the real profile rules up to a split in event
time; lifetime value is fitted on every customer's order summary then (``clv.refit``,
the learner's code). For each customer with an order before the split and one after it,
the next order the profile predicts at the split (``next_purchase``, the code the
profile document and segments run) is compared with the first order after the split:
the absolute error in days. Baselines on the same customers: the customer's last order
plus the population's mean gap between orders (everyone alike), and plus the customer's
own mean gap (customers with two orders or more before the split; the population's
otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary, refit
from cdpulse.models.next_purchase import next_purchase
from cdpulse.models.replayed import customer_events
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile
from cdpulse.profile.windows import DAY


@dataclass(frozen=True, slots=True)
class NextPurchaseResult:
    """Mean absolute errors (days) of the predicted next order, model and baselines."""

    customers: int  # customers scored: an order before the split and one after
    split_days: float  # days of history before the split
    model_mae: float
    population_gap_mae: float
    own_gap_mae: float
    fitted: bool  # False: lifetime value could not be fitted; the own gap alone was used

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    events: Iterable[Mapping[str, Any]],
    holdout_days: float | None = None,
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
) -> NextPurchaseResult | None:
    """Replay ``events`` (in any order) and score next orders after the split
    (the last third of the time span unless ``holdout_days``); None without any."""
    at_split = _at_split(events, holdout_days, rules, progress)
    if at_split is None:
        return None
    start, split, profiles, after, snapshot = at_split
    params = snapshot.model.purchases if snapshot is not None else None
    gaps = [
        (p.last_order_at - p.first_order_at) / DAY / (p.orders - 1)
        for p in profiles.values()
        if p.orders > 1 and p.first_order_at is not None and p.last_order_at is not None
    ]
    population_gap = sum(gaps) / len(gaps) if gaps else 0.0
    errors: list[tuple[float, ...]] = []
    for customer, actual in after.items():
        profile = profiles.get(customer)
        if profile is None or profile.last_order_at is None or profile.first_order_at is None:
            continue
        found = next_purchase(profile, params, split)
        predicted = found.expected_at if found is not None else None
        last = profile.last_order_at
        own = (
            (last - profile.first_order_at) / DAY / (profile.orders - 1)
            if profile.orders > 1
            else 0
        )
        population = last + population_gap * DAY
        own_at = last + (own or population_gap) * DAY
        model_at = predicted if predicted is not None else own_at
        errors.append(
            (
                abs(model_at - actual) / DAY,
                abs(population - actual) / DAY,
                abs(own_at - actual) / DAY,
            )
        )
    if not errors:
        return None
    n = len(errors)
    model, population, own_gap = (round(sum(column) / n, 2) for column in zip(*errors, strict=True))
    return NextPurchaseResult(
        customers=n,
        split_days=round((split - start) / DAY, 1),
        model_mae=model,
        population_gap_mae=population,
        own_gap_mae=own_gap,
        fitted=snapshot is not None,
    )


def fit_at_split(
    events: Iterable[Mapping[str, Any]],
    holdout_days: float | None = None,
    rules: Rules | None = None,
) -> ClvSnapshot | None:
    """The lifetime-value fit ``evaluate`` predicts with: on the orders before the split."""
    at_split = _at_split(events, holdout_days, rules, None)
    return at_split[-1] if at_split is not None else None


_AtSplit = tuple[int, int, dict[str, Profile], dict[str, int], ClvSnapshot | None]


def _at_split(
    events: Iterable[Mapping[str, Any]],
    holdout_days: float | None,
    rules: Rules | None,
    progress: Callable[[int], None] | None,
) -> _AtSplit | None:
    """The first event time, the split, every customer's profile at the split, their
    first order after it, and the fit at the split; None without any event."""
    rules = rules or Rules()
    parsed = customer_events(events, progress)
    if not parsed:
        return None
    start, end = min(e.at for e in parsed), max(e.at for e in parsed)
    held = (end - start) / 3 if holdout_days is None else holdout_days * DAY
    split = int(end - held)
    profiles: dict[str, Profile] = {}
    after: dict[str, int] = {}  # customer -> first order after the split
    for event in parsed:
        customer = event.customer_id
        assert customer is not None
        if event.at <= split:
            apply(profiles.setdefault(customer, new_profile(customer)), event, rules)
        elif event.type == "order_completed":
            after[customer] = min(event.at, after.get(customer, event.at))
    summaries = [s for p in profiles.values() if (s := OrderSummary.of(p)) is not None]
    return start, split, profiles, after, refit(summaries, split, None)
