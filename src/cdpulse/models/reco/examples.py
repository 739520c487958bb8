"""The ranker's examples: what an item event teaches about the candidate sources.

The event's products are positives, weighted by their level; ``negatives`` products the
customer could have been shown instead are negatives. The candidates are the ones a
recommendation would rank at that moment (``candidates``): the strongest partners of the
customer's anchors, the top products of their strongest categories, trending products,
their recent views and cart. Negatives are drawn uniformly from them (leaving out the
positives and what the customer may not buy again) without gathering them (``draw``),
and only the drawn products' features are computed: a few products instead of the few
hundred a recommendation scores, which is what makes learning cheap.

Only a share ``example_share`` of item events give examples, chosen by a hash of (seed,
customer, time); the draw is seeded by the same hash. So the same events give the same
examples in any process.
"""

from __future__ import annotations

import bisect
import itertools
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence

from cdpulse.models.reco.candidates import Candidate, anchors, fill
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.context import Context
from cdpulse.models.reco.interactions import Interaction
from cdpulse.models.reco.ranker import Example, vector
from cdpulse.models.reco.state import ALL, MemoryState, Shopper

_MASK = 2**64 - 1
# Draws before giving up on drawing (and taking what is eligible in order): a draw is
# kept with a chance of about |union| / entries, 0.4 on the simulator's catalogue.
_DRAWS_PER_PRODUCT = 10


def _draws(seed: int) -> Iterator[int]:
    """An endless stream of 31-bit numbers from ``seed`` (Knuth's 64-bit LCG, high bits)."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) & _MASK
        yield state >> 33


def draw(
    sources: Sequence[Collection[str]], n: int, eligible: Callable[[str], bool], seed: int
) -> list[str]:
    """``n`` eligible products drawn uniformly, without replacement, from the union of
    ``sources`` (fewer when there are fewer), without building the union.

    A draw picks one of all the sources' entries uniformly and keeps it only where it is
    the product's first entry (no earlier source holds it), so every product of the
    union has the same chance, however many sources hold it.

    >>> draw([["a", "b"], ["b", "c"]], 3, lambda p: p != "c", seed=7)
    ['b', 'a']
    """
    ends = list(itertools.accumulate(len(s) for s in sources))
    found: dict[str, None] = {}
    if ends and ends[-1]:
        draws = _draws(seed)
        for _ in range(_DRAWS_PER_PRODUCT * n):
            r = next(draws) % ends[-1]
            i = bisect.bisect_right(ends, r)
            # the r-th entry of source i (sources are short: leaders, top products)
            p = next(itertools.islice(sources[i], r - ends[i - 1] if i else r, None))
            if p in found or not eligible(p):
                continue
            for j in range(i):
                if p in sources[j]:
                    break  # not its first entry
            else:
                found[p] = None
                if len(found) == n:
                    return list(found)
    # Few eligible products (or an unlucky run): the rest in the sources' order.
    for source in sources:
        for p in source:
            if len(found) == n:
                return list(found)
            if p not in found and eligible(p):
                found[p] = None
    return list(found)


def chosen(config: RecoConfig, customer_id: str, t: int) -> int | None:
    """The hash that picks an event for examples and seeds its draw; None: not picked."""
    h = zlib.crc32(f"{config.seed}:{customer_id}:{t}:".encode())
    return h if h < config.example_share * 2**32 else None


def examples(
    state: MemoryState,
    config: RecoConfig,
    customer_id: str,
    shopper: Shopper,
    context: Context,
    items: Sequence[Interaction],
) -> list[Example]:
    """The examples of one item event, from the state just before it (see module doc)."""
    seed = chosen(config, customer_id, items[0].time)
    if seed is None:
        return []
    leading = [state.leading(anchor) for anchor in anchors(config, shopper, context)]
    sources: list[Collection[str]] = [members for _, members, _ in leading]
    strongest = sorted(context.affinity.items(), key=lambda kv: (-kv[1], kv[0]))
    for category, _ in strongest[: config.categories]:
        sources.append(state.leading_products(category, config.per_category))
    sources.append(state.leading_products(ALL, config.trending))
    viewed = context.recently_viewed[: config.recently_viewed]
    sources += [viewed, context.cart]

    positives = {i.product_id: i.level for i in items}
    bought, repeatable = shopper.bought, config.repeatable

    def eligible(p: str) -> bool:
        return p not in positives and (p not in bought or p in repeatable)

    negatives = draw(sources, config.negatives, eligible, seed)
    products = [*positives, *negatives]
    described = []
    for product in products:
        c = Candidate(product)
        for rank, (scores, members, mass) in enumerate(leading):
            if product in members:  # as ``candidates.generate`` sums it
                c.covisitation += 1.0 / (rank + 1) * (scores[product] / mass)
        if product in viewed:
            c.viewed = 1.0 / (viewed.index(product) + 1)
        c.in_cart = product in context.cart
        described.append(c)
    fill(state, described, context)
    out = [
        Example(vector(c), True, float(positives[c.product_id]))
        for c in described[: len(positives)]
    ]
    out += [Example(vector(c), False, 1.0) for c in described[len(positives) :]]
    return out
