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

What is kept per pair is the counts weighted by ``relation_weights`` and summed (the
only way they are read) and the strongest relation (for the reason shown): one number
per pair, where a map per relation cost three updates.

Bounded memory: per product the ``2 * neighbours`` strongest partners are kept; the map
may grow by half as many again before it is pruned back in one go (lowest score first,
on a tie the smaller id). Forward-decayed scores make a fresh count outweigh old ones, so
stale partners sink and fall out, and the slack lets a new partner gather counts before
it has to beat the established ones. A partner's *share* is its score over the product's
*mass*, the summed scores of its ``per_anchor`` strongest partners (the ones candidates
read), kept up to date with them (``leaders``): so a popular product with a long tail of
partners spreads no less over its best ones than a niche one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.interactions import Interaction
from cdpulse.models.reco.shards import ServedState
from cdpulse.models.reco.state import MemoryState, RecoState, Shopper, forward


@functools.lru_cache(maxsize=16)
def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    """(0, w1, w1 + w2, ...): the weight of relations r0+1 .. r1 is c[r1] - c[r0]."""
    out = [0.0]
    for w in weights:
        out.append(out[-1] + w)
    return tuple(out)


def learn(
    state: MemoryState,
    config: RecoConfig,
    shopper: Shopper,
    items: Sequence[Interaction],
    landmark: int,
) -> None:
    """Count the pairs ``items`` form with the shopper's session; update the session."""
    cumulative = _cumulative(config.relation_weights)
    add_pair = state.add_pair
    for item in items:
        product, t = item.product_id, item.time
        if t > shopper.session_last + config.session_gap:
            shopper.session = []
        window = shopper.session
        old = 0
        for entry in window:
            if entry[0] == product:
                old = entry[1]
                break
        new = item.level if item.level > old else old
        if new > old:
            amount = forward(1.0, t, landmark, config.covisitation_half_life)
            for other, level, _ in window:
                if other == product:
                    continue
                low = old if old < level else level
                high = new if new < level else level
                if high > low:
                    add_pair(product, other, amount * (cumulative[high] - cumulative[low]), high)
        if old:
            window[:] = [entry for entry in window if entry[0] != product]
        window.append((product, new, t))
        if len(window) > config.session_items:
            del window[: -config.session_items]
        if t > shopper.session_last:
            shopper.session_last = t


def scores(state: RecoState, product: str, n: int) -> dict[str, tuple[float, int]]:
    """Up to ``n`` partners of ``product``, best first: (share of its mass, relation).

    The relation is the strongest one the pair has had (for the reason shown). A served
    state remembers them: every list made from one snapshot reads the same.
    """
    if isinstance(state, ServedState):
        return state.remember(("scores", product, n), lambda: _scores(state, product, n))
    return _scores(state, product, n)


def _scores(state: RecoState, product: str, n: int) -> dict[str, tuple[float, int]]:
    mass = state.mass(product)
    if mass <= 0:
        return {}
    partners = state.partners(product, n)
    return {other: (score / mass, relation) for other, score, relation in partners}
