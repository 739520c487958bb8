"""Co-visitation: products one customer viewed, added or bought in the same session.

A session is a customer's item events closer than ``session_gap`` apart; its newest
``session_items`` distinct products form the window each new event pairs with. Every
product in the window carries the strongest level it reached this session (view 1,
cart 2, purchase 3). A pair's *relation* is the weaker of its two levels, and relations
are cumulative: a pair bought together was also added and viewed together. When an event
raises a pair's relation from r0 to r1, relations r0+1 .. r1 each count the pair once,
at the event's time, decayed with ``covisitation_half_life``. So a pair counts at most
once per relation per session, however often its products are clicked. A customer's
events are expected in time order (they share a partition); a late one pairs with the
session open when it arrives.

Bounded memory: per product and relation at most ``2 * neighbours`` partners are kept,
and the best ``neighbours`` of them are read. After each increment the weakest beyond
that capacity is pruned (lowest score, ties: smallest id, as in a Redis sorted set).
Forward-decayed scores make a fresh count outweigh old ones, so stale partners sink
and fall out; the slack half lets a new partner gather counts before it has to beat
the ``neighbours``-th best (pruning at exactly ``neighbours`` would evict a promising
partner on its first count whenever the list is full).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.interactions import PURCHASE, Interaction
from cdpulse.models.reco.state import RecoState, ServedState, Shopper, forward

RELATIONS = range(1, PURCHASE + 1)


def learn(
    state: RecoState,
    config: RecoConfig,
    shopper: Shopper,
    items: Sequence[Interaction],
    landmark: int,
) -> None:
    """Count the pairs ``items`` form with the shopper's session; update the session."""
    kept = 2 * config.neighbours
    for item in items:
        if item.time > shopper.session_last + config.session_gap:
            shopper.session = []
        window = shopper.session
        old = next((level for p, level, _ in window if p == item.product_id), 0)
        new = max(old, item.level)
        if new > old:
            amount = forward(1.0, item.time, landmark, config.covisitation_half_life)
            for other, level, _ in window:
                if other == item.product_id:
                    continue
                for relation in range(min(old, level) + 1, min(new, level) + 1):
                    state.add_neighbour(relation, item.product_id, other, amount, kept)
                    state.add_neighbour(relation, other, item.product_id, amount, kept)
        window[:] = [entry for entry in window if entry[0] != item.product_id]
        window.append((item.product_id, new, item.time))
        del window[: -config.session_items]
        shopper.session_last = max(shopper.session_last, item.time)


def scores(
    state: RecoState, config: RecoConfig, product: str, n: int
) -> dict[str, tuple[float, int]]:
    """Up to ``n`` partners of ``product``: (share of its weighted pair score, relation).

    The share is the partner's ``relation_weights``-weighted score over their sum for
    the ``neighbours`` partners read, so it does not depend on time; the relation is the
    strongest one the pair has (for the reason shown). A served (read-only) state
    remembers them: they are the same for every list made from one snapshot.
    """
    if isinstance(state, ServedState):
        return state.remember(("partners", product, n), lambda: _scores(state, config, product, n))
    return _scores(state, config, product, n)


def _scores(
    state: RecoState, config: RecoConfig, product: str, n: int
) -> dict[str, tuple[float, int]]:
    combined: dict[str, float] = {}
    strongest: dict[str, int] = {}
    for relation in RELATIONS:
        weight = config.relation_weights[relation - 1]
        for other, stored in state.neighbours(relation, product, config.neighbours):
            combined[other] = combined.get(other, 0.0) + weight * stored
            strongest[other] = relation
    total = sum(combined.values())
    if total <= 0:
        return {}
    best = heapq.nsmallest(n, combined.items(), key=lambda kv: (-kv[1], kv[0]))
    return {other: (score / total, strongest[other]) for other, score in best}
