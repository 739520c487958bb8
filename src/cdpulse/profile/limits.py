"""Caps on the per-profile lists that nothing else bounds, and the tally of what they drop.

Most of a profile is bounded by its shape: a fixed key set (event types, channels,
consent purposes, allow-listed traits), an event-time window (window buckets, churn
days, the dedupe window) or a count of the newest (session spans, recently viewed).
What only grows with the customer's own behaviour (distinct products in the cart,
changes to one cart line, distinct categories, campaign exposures waiting for their
label) is capped here (distinct custom event
names in ``profile/custom.py``, under the same tally), keeping what the
features read (the newest by event time, the strongest affinity), with every entry
dropped counted by list in ``cdpulse_profile_list_dropped_total{list=...}``.

The cart is trimmed like a checkout: its horizon (``Profile.cart_cleared_at``) moves up
just far enough that at most ``lines_kept`` products and ``CART_CHANGES_KEPT`` changes per
product are newer. That horizon is a function of the set of changes (it only depends on
the changes newer than it, and only rises), so a trimmed cart still does not depend on
arrival order, and ``merge`` (max of the horizons, then trim) stays exact.
"""

from __future__ import annotations

from collections import Counter

from cdpulse.profile.model import Profile

# A cart line's quantity changes kept: an add/remove see-saw on one product is the only
# way past it (the simulated shop's most is 5), and the view reads the net quantity and
# the oldest add, which the newest 32 changes since the horizon still give.
CART_CHANGES_KEPT = 32

# Campaign exposures recorded within one response window (``Profile.campaign``; the same
# campaign again in its window is the same exposure): four in the simulated shop at
# most (two newsletters a week, two offers). Past this many the newer are not recorded,
# decided by event time alone (``CampaignLabeler.observe``).
EXPOSURES_KEPT = 8

# The lists counted; the label of ``cdpulse_profile_list_dropped_total``.
CART = "cart"  # cart lines (products) trimmed
CART_CHANGES = "cart_changes"  # quantity changes trimmed, those of trimmed lines included
AFFINITY = "affinity"  # categories with the weakest affinity
WATCH_VIEWS = "watch_views"  # products of one session's views the high-intent rule counts
# custom event names past the cap (profile/custom.py): each name a new one pushes out,
# and each event of a name that does not fit
CUSTOM_NAMES = "custom_names"
CAMPAIGN_EXPOSURES = "campaign_exposures"  # past EXPOSURES_KEPT in a window: unlabelled
LISTS = (CART, CART_CHANGES, AFFINITY, WATCH_VIEWS, CUSTOM_NAMES, CAMPAIGN_EXPOSURES)

# Work counts are one Counter per batch: dropped entries go in it under this prefix, so
# the pipeline needs no second tally (``app/reporting.py`` reads them back by list).
_PREFIX = "list_dropped:"

Dropped = Counter[str]


def counted(name: str) -> str:
    """The key under which entries dropped from list ``name`` are counted."""
    return _PREFIX + name


def trim_cart(profile: Profile, lines_kept: int, dropped: Dropped | None) -> None:
    """Raise the cart's horizon until at most ``lines_kept`` products and
    ``CART_CHANGES_KEPT`` changes per product are newer; drop what it passes."""
    cart = profile.cart
    horizon = profile.cart_cleared_at
    for line in cart.values():
        if len(line.changes) > CART_CHANGES_KEPT:
            times = sorted(t for t, _ in line.changes)
            horizon = max(horizon, times[-CART_CHANGES_KEPT - 1])
    if len(cart) > lines_kept:
        newest = sorted(
            (max((t for t, _ in line.changes), default=-1) for line in cart.values()),
            reverse=True,
        )
        horizon = max(horizon, newest[lines_kept])
    if horizon == profile.cart_cleared_at:
        return
    lines, changes = len(cart), sum(len(line.changes) for line in cart.values())
    profile.cart_cleared_at = horizon
    for product_id in list(cart):
        line = cart[product_id]
        line.changes = [(t, d) for t, d in line.changes if t > horizon]
        if not line.changes:
            del cart[product_id]
    if dropped is not None:
        dropped[counted(CART)] += lines - len(cart)
        dropped[counted(CART_CHANGES)] += changes - sum(len(line.changes) for line in cart.values())


def trim_affinity(profile: Profile, kept: int, dropped: Dropped | None) -> None:
    """Keep the ``kept`` strongest categories; on equal scores the larger name stays."""
    affinity = profile.affinity
    excess = len(affinity) - kept
    if excess <= 0:
        return
    if excess == 1:
        del affinity[min(affinity, key=lambda c: (affinity[c], c))]
    else:
        for category in sorted(affinity, key=lambda c: (affinity[c], c))[:excess]:
            del affinity[category]
    if dropped is not None:
        dropped[counted(AFFINITY)] += excess
