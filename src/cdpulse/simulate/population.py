"""The synthetic shop's customers: how each one shops, and the hidden truth about them.

Every customer draws propensities once (visit rate, browse depth, basket size,
conversion, spend tier, channel preferences, favourite categories). A share start as
anonymous visitors and some of those never log in; a share churn at a hidden instant
``churn_at``, and their visits thin out over the two weeks before it, so a churn model
has a signal to learn. ``churn_at`` is the ground truth that churn training is scored on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

from cdpulse.simulate.catalogue import SPEND_TIERS, Catalogue

DAY_MS = 86_400_000

CHURN_SHARE = 0.25
ANONYMOUS_SHARE = 0.35
NEVER_IDENTIFY_SHARE = 0.25  # of the anonymous ones
LATE_JOINER_SHARE = 0.3
# Over this many days before churn_at a churner's visit rate falls linearly to the floor.
CHURN_FADE_DAYS = 14.0
CHURN_FADE_FLOOR = 0.25

SESSION_CHANNELS: tuple[str, ...] = ("web", "app")
_COUNTRIES: tuple[tuple[str, str], ...] = (
    ("DE", "de-DE"),
    ("FR", "fr-FR"),
    ("NL", "nl-NL"),
    ("ES", "es-ES"),
    ("IT", "it-IT"),
    ("AT", "de-AT"),
)


@dataclass(frozen=True, slots=True)
class Customer:
    """One synthetic customer: identity, shopping propensities and hidden churn date."""

    customer_id: str
    # set when the customer first visits anonymously; identify later links it
    anonymous_id: str | None
    # False for an anonymous visitor who never logs in (and so never orders)
    identifies: bool
    first_day: int
    churn_at: datetime | None
    visit_rate: float  # expected sessions per day while active
    browse_depth: float  # mean page and product views per session
    purchase_intent: float  # share of sessions that come to buy
    basket_size: float  # mean cart lines of a buying session
    conversion_rate: float  # P(order | checkout started)
    spend_tier: int  # index into catalogue.SPEND_TIERS
    app_share: float  # share of sessions in the app rather than on the web
    email_open_rate: float
    store_rate: float  # expected store purchases per day
    categories: tuple[str, ...]  # the 1-3 preferred categories
    category_cum_weights: tuple[float, ...]
    country: str
    locale: str

    def visit_rate_at(self, days_before_churn: float | None) -> float:
        """Sessions expected on a day this many days before churn_at (None: no churn)."""
        if days_before_churn is None:
            return self.visit_rate
        fade = min(1.0, max(CHURN_FADE_FLOOR, days_before_churn / CHURN_FADE_DAYS))
        return self.visit_rate * fade


def generate_customers(
    rng: random.Random, catalogue: Catalogue, count: int, start: datetime, days: int
) -> tuple[Customer, ...]:
    """Draw ``count`` customers active within ``days`` days from ``start``."""
    return tuple(_customer(rng, catalogue, i, start, days) for i in range(count))


def _customer(
    rng: random.Random, catalogue: Catalogue, index: int, start: datetime, days: int
) -> Customer:
    anonymous = rng.random() < ANONYMOUS_SHARE
    first_day = rng.randrange(days) if rng.random() < LATE_JOINER_SHARE else 0
    churn_at = None
    if rng.random() < CHURN_SHARE:
        # churn_at lies after the first day so every churner has some history
        earliest = (first_day + 1) * DAY_MS
        if earliest < days * DAY_MS:
            churn_at = start + timedelta(milliseconds=rng.randrange(earliest, days * DAY_MS))
    favourites = rng.sample(catalogue.categories, k=rng.choice((1, 2, 2, 3)))
    weights = sorted((rng.uniform(0.5, 1.0) for _ in favourites), reverse=True)
    country, locale = rng.choice(_COUNTRIES)
    return Customer(
        customer_id=f"cust-{index + 1:06d}",
        anonymous_id=f"anon-{rng.getrandbits(64):016x}" if anonymous else None,
        identifies=not anonymous or rng.random() >= NEVER_IDENTIFY_SHARE,
        first_day=first_day,
        churn_at=churn_at,
        visit_rate=min(3.0, rng.lognormvariate(-1.1, 0.6)),
        browse_depth=rng.uniform(2.5, 7.0),
        purchase_intent=rng.betavariate(2.0, 6.0),
        basket_size=rng.uniform(1.0, 3.5),
        conversion_rate=rng.betavariate(6.0, 2.5),
        spend_tier=rng.randrange(len(SPEND_TIERS)),
        app_share=rng.betavariate(1.2, 1.8),
        email_open_rate=rng.betavariate(2.0, 5.0),
        store_rate=rng.choice((0.0, 0.0, 0.01, 0.03)),
        categories=tuple(favourites),
        category_cum_weights=tuple(accumulate(weights)),
        country=country,
        locale=locale,
    )
