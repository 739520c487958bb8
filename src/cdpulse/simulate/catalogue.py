"""The synthetic shop's catalogue: categories, products, prices and popularity.

Prices are lognormal per category (books are cheap, electronics are not), and a few
products per category are marked popular and drawn far more often, so trending and
co-visitation have something to find.

>>> import random
>>> catalogue = Catalogue.generate(random.Random(7))
>>> len(catalogue.categories), len(catalogue.products) > 200
(10, True)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import accumulate

# (name, median price in EUR, log-space spread, number of products)
_CATEGORIES: tuple[tuple[str, float, float, int], ...] = (
    ("electronics", 120.0, 0.9, 36),
    ("books", 14.0, 0.45, 40),
    ("fashion", 45.0, 0.6, 40),
    ("home", 35.0, 0.7, 32),
    ("beauty", 18.0, 0.5, 28),
    ("sports", 40.0, 0.75, 28),
    ("toys", 22.0, 0.6, 24),
    ("grocery", 6.0, 0.5, 30),
    ("garden", 30.0, 0.8, 20),
    ("pets", 16.0, 0.6, 22),
)

# Spend tiers weigh products by price**exponent: thrifty customers lean to cheap
# products, big spenders to expensive ones.
SPEND_TIERS: tuple[float, ...] = (-0.8, 0.0, 0.8)
_POPULAR_SHARE = 0.1
_POPULAR_BOOST = 8.0


@dataclass(frozen=True, slots=True)
class Product:
    """One sellable product; ``price_cents`` keeps order totals exact."""

    product_id: str
    category: str
    price_cents: int
    popular: bool

    @property
    def price(self) -> float:
        """The price in EUR as it appears in events."""
        return self.price_cents / 100


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All products, grouped by category, with per-spend-tier pick weights."""

    categories: tuple[str, ...]
    products: tuple[Product, ...]
    by_category: dict[str, tuple[Product, ...]]
    # cumulative weights per (category, spend tier), for random.choices(cum_weights=...)
    cum_weights: dict[tuple[str, int], tuple[float, ...]]

    @classmethod
    def generate(cls, rng: random.Random) -> Catalogue:
        """Draw a catalogue of ~300 products over 10 categories from ``rng``."""
        products: list[Product] = []
        by_category: dict[str, tuple[Product, ...]] = {}
        cum_weights: dict[tuple[str, int], tuple[float, ...]] = {}
        for name, median, spread, count in _CATEGORIES:
            items: list[Product] = []
            for _ in range(count):
                cents = max(99, round(rng.lognormvariate(math.log(median), spread) * 100))
                # prices end in .99 or .49 like a real shop's
                cents = cents // 100 * 100 + (99 if cents % 100 >= 50 else 49)
                popular = rng.random() < _POPULAR_SHARE
                items.append(
                    Product(f"P-{len(products) + len(items) + 1:04d}", name, cents, popular)
                )
            products.extend(items)
            by_category[name] = tuple(items)
            for tier, exponent in enumerate(SPEND_TIERS):
                weights = [
                    (_POPULAR_BOOST if p.popular else 1.0)
                    * (p.price_cents / median / 100) ** exponent
                    for p in items
                ]
                cum_weights[(name, tier)] = tuple(accumulate(weights))
        return cls(
            categories=tuple(name for name, *_ in _CATEGORIES),
            products=tuple(products),
            by_category=by_category,
            cum_weights=cum_weights,
        )

    def pick(self, rng: random.Random, category: str, spend_tier: int) -> Product:
        """A product of ``category``, popular and tier-priced ones more likely."""
        items = self.by_category[category]
        return rng.choices(items, cum_weights=self.cum_weights[(category, spend_tier)])[0]
