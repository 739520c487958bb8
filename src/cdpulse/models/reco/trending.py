"""Trending: each product's popularity, decayed with ``trending_half_life``.

Views, cart adds and purchases count with ``trending_weights`` (1, 3, 5 by default),
globally and within the product's category, as forward-decayed sums (see ``state``).
Shares of a total do not depend on the time they are read at.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.interactions import Interaction
from cdpulse.models.reco.state import ALL, MemoryState, RecoState, forward


def learn(
    state: MemoryState, config: RecoConfig, items: Sequence[Interaction], landmark: int
) -> None:
    """Count the interactions of one event."""
    for item in items:
        weight = config.trending_weights[item.level - 1]
        amount = forward(weight, item.time, landmark, config.trending_half_life)
        state.add_popularity(item.product_id, item.category, amount)


def top(state: RecoState, n: int, category: str = ALL) -> list[tuple[str, float]]:
    """The ``n`` most popular products (of ``category``) with their share of its total."""
    total = state.total_popularity(category)
    if total <= 0:
        return []
    return [(p, score / total) for p, score in state.top_products(category, n)]
