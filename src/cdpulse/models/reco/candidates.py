"""Candidates: the few hundred products worth ranking for one customer right now.

Four sources, each scored as a share so that they compare across time:

* co-visitation — partners of the customer's newest products (the open session first,
  then the profile's recently viewed products and its cart), each anchor weighted
  1/(rank + 1);
* category — the most popular products of the customer's strongest categories, scored
  by the category's share of the affinity times the product's share of its category;
* trending — the most popular products overall (what a newcomer gets);
* recently viewed — the customer's own recent products, weighted 1/(rank + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdpulse.models.reco import covisitation
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.context import Context
from cdpulse.models.reco.shards import ServedState
from cdpulse.models.reco.state import ALL, RecoState, Shopper

__all__ = ["Candidate", "Context", "Pool", "anchors", "fill", "generate"]


@dataclass(slots=True)
class Candidate:
    """A product and what each source says about it (all shares in [0, 1])."""

    product_id: str
    category: str | None = None
    covisitation: float = 0.0
    anchor: str | None = None  # the anchor that contributed most to ``covisitation``
    relation: int = 0  # its strongest relation with the anchor
    affinity: float = 0.0  # the customer's share of affinity in the product's category
    category_share: float = 0.0  # the product's share of its category's popularity
    popularity: float = 0.0  # the product's share of all popularity
    viewed: float = 0.0
    in_cart: bool = False


def anchors(config: RecoConfig, shopper: Shopper, context: Context) -> list[str]:
    """The customer's newest products: the session (newest first), recent views, cart."""
    session = [p for p, _, _ in reversed(shopper.session)]
    ordered = dict.fromkeys([*session, *context.recently_viewed, *context.cart])
    return list(ordered)[: config.anchors]


# A product's category, its share of the category's popularity and of all popularity.
ProductRow = tuple[str | None, float, float]


@dataclass(slots=True)
class Pool:
    """A customer's candidates now, and what their features are read from.

    Only the co-visitation shares are summed here, the one feature that needs the walk
    over the anchors' partners; the others are read per product as it is scored, and a
    ``Candidate`` (with the anchor that contributed most) is made only for the few
    products a list shows.
    """

    covisitation: dict[str, float]  # every candidate -> its co-visitation
    anchors: list[tuple[str, dict[str, tuple[float, int]]]]  # newest first, with partners
    viewed: dict[str, float]  # recently viewed candidates -> 1 / (rank + 1)
    cart: tuple[str, ...]
    rows: dict[str, ProductRow]  # at least every candidate -> its ``_product_rows`` row
    affinity: dict[str, float]  # category -> the customer's share of affinity in it

    def candidate(self, product: str) -> Candidate:
        """``product`` with every feature, and the anchor that contributed most to its
        co-visitation (the newest on a tie) with their strongest relation."""
        category, share, popularity = self.rows[product]
        anchor: str | None = None
        relation = 0
        strongest = 0.0
        for rank, (name, partners) in enumerate(self.anchors):
            found = partners.get(product)
            if found is not None:
                contribution = 1.0 / (rank + 1) * found[0]
                if contribution > strongest:
                    strongest, anchor, relation = contribution, name, found[1]
        return Candidate(
            product,
            category,
            self.covisitation[product],
            anchor,
            relation,
            self.affinity.get(category, 0.0) if category is not None else 0.0,
            share,
            popularity,
            self.viewed.get(product, 0.0),
            product in self.cart,
        )


def generate(state: RecoState, config: RecoConfig, shopper: Shopper, context: Context) -> Pool:
    """Candidates from every source, with what their features are read from."""
    found: dict[str, float] = {}  # product -> co-visitation
    walked: list[tuple[str, dict[str, tuple[float, int]]]] = []
    # Local names for the ~200 partner steps of a list (most of generate's own time).
    found_get, per_anchor = found.get, config.per_anchor
    for rank, anchor in enumerate(anchors(config, shopper, context)):
        weight = 1.0 / (rank + 1)
        partners = covisitation.scores(state, anchor, per_anchor)
        walked.append((anchor, partners))
        for other, (share, _) in partners.items():
            found[other] = found_get(other, 0.0) + weight * share
    # The other sources' products join with no co-visitation. Where a product is found
    # first is of no consequence: a list ranks by score, then product (all unique).
    by_affinity = sorted(context.affinity.items(), key=lambda kv: (-kv[1], kv[0]))
    pool: dict[str, float] = {}
    for category, _ in by_affinity[: config.categories]:
        pool.update(_top(state, category, config.per_category))
    pool.update(_top(state, ALL, config.trending))
    viewed: dict[str, float] = {}
    for rank, product in enumerate(context.recently_viewed[: config.recently_viewed]):
        pool[product] = 0.0
        viewed[product] = 1.0 / (rank + 1)
    pool.update(dict.fromkeys(context.cart, 0.0))
    pool.update(found)
    rows = _product_rows(state, list(pool))
    return Pool(pool, walked, viewed, context.cart, rows, affinity_shares(context))


def _top(state: RecoState, category: str, n: int) -> dict[str, float]:
    """The ``n`` most popular products of ``category``, each with no co-visitation; a
    served snapshot remembers them."""
    if isinstance(state, ServedState):
        return state.remember(("top-pool", category, n), lambda: _top_of(state, category, n))
    return _top_of(state, category, n)


def _top_of(state: RecoState, category: str, n: int) -> dict[str, float]:
    return dict.fromkeys([product for product, _ in state.top_products(category, n)], 0.0)


def affinity_shares(context: Context) -> dict[str, float]:
    """Per category of the customer's affinity, its share of their affinity (none when
    the affinity sums to nothing)."""
    total_affinity = sum(context.affinity.values())
    if total_affinity <= 0:
        return {}
    return {category: value / total_affinity for category, value in context.affinity.items()}


def _product_rows(state: RecoState, products: list[str]) -> dict[str, ProductRow]:
    """What every customer's candidates read of a product alike, by product (``products``
    at least); a served snapshot computes a product's once (most lists share the top
    products of a few categories)."""
    if isinstance(state, ServedState):
        known = state.remembered_rows()
        if known is not None:
            missing = [p for p in dict.fromkeys(products) if p not in known]
            if missing:
                known.update(zip(missing, _compute_rows(state, missing), strict=True))
            return known
    unique = list(dict.fromkeys(products))
    return dict(zip(unique, _compute_rows(state, unique), strict=True))


def _compute_rows(state: RecoState, products: list[str]) -> list[ProductRow]:
    total = state.total_popularity(ALL)
    category_totals: dict[str, float] = {}
    rows: list[ProductRow] = []
    for category, stored in zip(
        state.categories(products), state.popularity(products), strict=True
    ):
        overall = stored / total if total > 0 else 0.0
        if category is None:
            rows.append((None, 0.0, overall))
            continue
        category_total = category_totals.get(category)
        if category_total is None:
            category_total = category_totals[category] = state.total_popularity(category)
        rows.append((category, stored / category_total if category_total > 0 else 0.0, overall))
    return rows


def fill(state: RecoState, candidates: list[Candidate], context: Context) -> None:
    """Set category, affinity and popularity shares of ``candidates``."""
    rows = _product_rows(state, [c.product_id for c in candidates])
    of_category = affinity_shares(context).get
    for c in candidates:
        category, c.category_share, c.popularity = rows[c.product_id]
        c.category = category
        c.affinity = 0.0 if category is None else of_category(category, 0.0)
