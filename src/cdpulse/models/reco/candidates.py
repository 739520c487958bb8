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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from cdpulse.models.reco import covisitation, trending
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.state import ALL, RecoState, Shopper
from cdpulse.profile.model import Profile
from cdpulse.profile.view import cart_view


class Context(msgspec.Struct, frozen=True, gc=False):
    """What the customer's profile says now: category affinity, recent views, cart."""

    affinity: dict[str, float] = msgspec.field(default_factory=dict)  # category -> any scale
    recently_viewed: tuple[str, ...] = ()  # newest first
    cart: tuple[str, ...] = ()

    @classmethod
    def from_view(cls, view: Mapping[str, Any]) -> Context:
        """From the profile JSON (``GET /v1/profiles/{id}``)."""
        cart = view.get("cart") or {}
        return cls(
            affinity=dict(view.get("category_affinity") or {}),
            recently_viewed=tuple(view.get("recently_viewed") or ()),
            cart=tuple(item["product_id"] for item in cart.get("items", ())),
        )

    @classmethod
    def from_profile(cls, profile: Profile) -> Context:
        """From a ``Profile``; affinity shares do not depend on the time it is read at."""
        viewed = sorted(profile.viewed.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(
            affinity=dict(profile.affinity),
            recently_viewed=tuple(p for p, _ in viewed),
            cart=tuple(item["product_id"] for item in cart_view(profile)["items"]),
        )


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


def generate(
    state: RecoState, config: RecoConfig, shopper: Shopper, context: Context
) -> dict[str, Candidate]:
    """Candidates from every source with every feature filled in, by product id."""
    found: dict[str, Candidate] = {}
    best_anchor: dict[str, float] = {}

    def candidate(product: str) -> Candidate:
        c = found.get(product)
        if c is None:
            c = found[product] = Candidate(product)
        return c

    for rank, anchor in enumerate(anchors(config, shopper, context)):
        weight = 1.0 / (rank + 1)
        for other, (share, relation) in covisitation.scores(
            state, anchor, config.per_anchor
        ).items():
            c = candidate(other)
            c.covisitation += weight * share
            if weight * share > best_anchor.get(other, 0.0):
                best_anchor[other] = weight * share
                c.anchor, c.relation = anchor, relation
    strongest = sorted(context.affinity.items(), key=lambda kv: (-kv[1], kv[0]))
    for category, _ in strongest[: config.categories]:
        for product, _ in trending.top(state, config.per_category, category):
            candidate(product)
    for product, _ in trending.top(state, config.trending):
        candidate(product)
    for rank, product in enumerate(context.recently_viewed[: config.recently_viewed]):
        candidate(product).viewed = 1.0 / (rank + 1)
    for product in context.cart:
        candidate(product).in_cart = True
    fill(state, list(found.values()), context)
    return found


def fill(state: RecoState, candidates: list[Candidate], context: Context) -> None:
    """Set category, affinity and popularity shares of ``candidates``."""
    total_affinity = sum(context.affinity.values())
    products = [c.product_id for c in candidates]
    total = state.total_popularity(ALL)
    category_totals: dict[str, float] = {}
    for c, category, stored in zip(
        candidates, state.categories(products), state.popularity(products), strict=True
    ):
        c.category = category
        if total > 0:
            c.popularity = stored / total
        if category is None:
            continue
        if category not in category_totals:
            category_totals[category] = state.total_popularity(category)
        if category_totals[category] > 0:
            c.category_share = stored / category_totals[category]
        if total_affinity > 0:
            c.affinity = context.affinity.get(category, 0.0) / total_affinity
