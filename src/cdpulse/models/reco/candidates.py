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

__all__ = ["Candidate", "Context", "Pool", "anchors", "fill", "generate", "shares"]


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


@dataclass(slots=True)
class Pool:
    """A customer's candidates now, as flat columns (a ``Candidate`` only when asked).

    ``products`` in the order found; the other columns are aligned with it.
    """

    products: list[str]
    covisitation: list[float]
    anchor: list[tuple[str, int] | None]  # the anchor that contributed most, its relation
    viewed: list[float]
    in_cart: list[bool]
    category: list[str | None]
    affinity: list[float]
    category_share: list[float]
    popularity: list[float]

    def vector(self, i: int) -> tuple[float, ...]:
        """The ranker's input for candidate ``i`` (``ranker.vector`` of its ``Candidate``)."""
        a, share = self.affinity[i], self.category_share[i]
        return (
            self.covisitation[i],
            a * share,
            a,
            share,
            self.popularity[i],
            self.viewed[i],
            float(self.in_cart[i]),
        )

    def candidate(self, i: int) -> Candidate:
        anchor, relation = self.anchor[i] or (None, 0)
        return Candidate(
            self.products[i],
            self.category[i],
            self.covisitation[i],
            anchor,
            relation,
            self.affinity[i],
            self.category_share[i],
            self.popularity[i],
            self.viewed[i],
            self.in_cart[i],
        )


def generate(state: RecoState, config: RecoConfig, shopper: Shopper, context: Context) -> Pool:
    """Candidates from every source with every feature filled in."""
    found: dict[str, float] = {}  # product -> co-visitation, in the order found
    strongest: dict[str, float] = {}  # product -> its largest single contribution
    anchor_of: dict[str, tuple[str, int]] = {}  # product -> that anchor, its relation
    # Local names for the ~300 partner steps of a list (most of generate's own time).
    found_get, strongest_get, per_anchor = found.get, strongest.get, config.per_anchor
    for rank, anchor in enumerate(anchors(config, shopper, context)):
        weight = 1.0 / (rank + 1)
        for other, (share, relation) in covisitation.scores(state, anchor, per_anchor).items():
            contribution = weight * share
            found[other] = found_get(other, 0.0) + contribution
            if contribution > strongest_get(other, 0.0):
                strongest[other] = contribution
                anchor_of[other] = (anchor, relation)
    by_affinity = sorted(context.affinity.items(), key=lambda kv: (-kv[1], kv[0]))
    for category, _ in by_affinity[: config.categories]:
        for product, _ in state.top_products(category, config.per_category):
            found.setdefault(product, 0.0)
    for product, _ in state.top_products(ALL, config.trending):
        found.setdefault(product, 0.0)
    viewed: dict[str, float] = {}
    for rank, product in enumerate(context.recently_viewed[: config.recently_viewed]):
        found.setdefault(product, 0.0)
        viewed[product] = 1.0 / (rank + 1)
    for product in context.cart:
        found.setdefault(product, 0.0)
    products = list(found)
    cart = set(context.cart)
    return Pool(
        products,
        list(found.values()),
        [anchor_of.get(p) for p in products],
        [viewed.get(p, 0.0) for p in products],
        [p in cart for p in products],
        *shares(state, products, context),
    )


def shares(
    state: RecoState, products: list[str], context: Context
) -> tuple[list[str | None], list[float], list[float], list[float]]:
    """Per product: its category, the customer's share of affinity in it, the product's
    share of its category's popularity and of all popularity."""
    rows = _product_rows(state, products)
    if not rows:
        return [], [], [], []
    # Columns from rows in C (``zip``), not four appends per product.
    categories, category_share, popularity = (list(column) for column in zip(*rows, strict=True))
    total_affinity = sum(context.affinity.values())
    if total_affinity <= 0:
        return categories, [0.0] * len(rows), category_share, popularity
    affinities = context.affinity
    affinity = [
        0.0 if category is None else affinities.get(category, 0.0) / total_affinity
        for category in categories
    ]
    return categories, affinity, category_share, popularity


# A product's category, its share of the category's popularity and of all popularity.
ProductRow = tuple[str | None, float, float]


def _product_rows(state: RecoState, products: list[str]) -> list[ProductRow]:
    """What every customer's candidates read of a product alike; a served snapshot
    computes a product's once (most lists share the top products of a few categories)."""
    if isinstance(state, ServedState):
        known = state.remembered_rows()
        if known is not None:
            missing = [p for p in dict.fromkeys(products) if p not in known]
            if missing:
                known.update(zip(missing, _compute_rows(state, missing), strict=True))
            return [known[p] for p in products]
    return _compute_rows(state, products)


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
    products = [c.product_id for c in candidates]
    columns = shares(state, products, context)
    for c, category, affinity, share, popularity in zip(candidates, *columns, strict=True):
        c.category, c.affinity, c.category_share, c.popularity = (
            category,
            affinity,
            share,
            popularity,
        )
