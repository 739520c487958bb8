"""What a recommendation reads of the customer's profile: category affinity, recent views,
cart.

A module of its own because it is a msgspec struct (``ItemEvent`` carries it on
``cdp.reco-events``): the candidate code beside it is compiled by mypyc (``setup.py``),
which would make a struct of it a native class msgspec does not accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cdpulse.profile.model import Profile
from cdpulse.profile.view import in_cart


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
        # Newest first, ties by product: by product, then a stable sort by time (once per
        # item event in the worker: C-level keys, not a Python key function per product).
        viewed = profile.viewed
        newest_first = sorted(viewed)
        newest_first.sort(key=viewed.__getitem__, reverse=True)
        return cls(
            affinity=dict(profile.affinity),
            recently_viewed=tuple(newest_first),
            cart=tuple(in_cart(profile)),
        )
