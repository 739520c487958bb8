"""Identity stitching for one batch: which profile each event belongs to, which visitors
merge into which customer, which links the batch's write makes and which it refuses.

``identify`` with an ``anonymous_id`` links that visitor to the customer. The rules:

* A *known customer* is an id some event has used as ``customer_id``: its stored profile
  says so (``Profile.customer_id``), or an event of the batch does. Events carrying a
  ``customer_id`` always go to that customer's own profile; a link never carries them.
* A link whose visitor is a known customer is refused (``known_customer``), so a customer
  is never merged into another one by an identify, whichever event came first. Chains
  and cycles cannot form: the customer of an identify is known, so its own link (if
  any) no longer applies, and a link to it as a visitor is refused by this rule; every
  link is one hop, from a visitor to a customer.
* A visitor already linked to another customer stays there (first link wins: a shared
  device); counted as a conflict, as before.

A refused identify is dead-lettered with
reason ``identity_refused`` and the rule, and applied to its customer without the link
(traits, ``identified_at``), as a first-link-wins conflict always was: the customer is
known either way, so what the batch decides does not depend on which of its events
is refused. A re-delivered refusal the profile already applied is not dead-lettered again.

A visitor linked while it was only a visitor and *later* used as a ``customer_id``
becomes a customer of its own: its customer events go to its own profile, whose save
removes the link (``store/write.lua``), and from then on its anonymous events too. What
it did as a visitor before that stays merged in the customer it was linked to: a merge
is never undone. So the outcome for a known customer does not depend on order: its
customer events are never in another customer's profile.

Why one id space and not separate customer and visitor namespaces: profile keys, the
API's ``/v1/profiles/{id}``, erasure, segments and every oracle name a profile by one
id; the marker the profile already carries decides the rules with the batch's one read.

**Merging two known customers** is an admin operation of its own (``customers_merged``,
published by POST /v1/admin/merges): ``properties.merged_id`` is merged into the event's
``customer_id``, the survivor, exactly as a visitor merges (once, ``Profile.merged_from``),
and its link is a *customer link*: the survivor lists it in ``Profile.merged_customers``,
and only such a link carries events with ``customer_id`` (the merged customer's later
events go to the survivor). A visitor link never does. Refused, dead-lettered
``merge_refused`` with the rule (``MERGE_RULES``): a merge of an id into itself, of an
id no event before it used as ``customer_id`` (stored, or earlier in the batch: where
the stream was cut must not matter), of an id merged into someone already
(a chain), into a survivor merged away itself, or back into the customer it was merged
into (a cycle). A merge already made (a re-delivery, a repeated request) changes nothing.
The merged customer's own links move to the survivor with the same save, so every link
stays one hop (``store/write.lua``).

Every id resolves through the links that apply to its profile; a visitor whose profile
is still stored (merged by an earlier, interrupted attempt, or never merged) merges into
the customer it resolves to, exactly once (``Profile.merged_from``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from cdpulse.contract.mirror import CustomersMergedEvent, IdentifyEvent
from cdpulse.pipeline.decode import Item
from cdpulse.pipeline.state import View
from cdpulse.profile.rules import is_duplicate

MAX_HOPS = 8  # links never chain; a bound keeps a hostile graph finite

# Why a link is refused (the dead letter's detail and the metric's label).
KNOWN_CUSTOMER = "known_customer"
RULES: dict[str, str] = {
    KNOWN_CUSTOMER: "its anonymous_id is a known customer (used as customer_id)",
}
# Why an admin merge of two customers is refused (likewise).
SELF_MERGE = "self_merge"
UNKNOWN_CUSTOMER = "unknown_customer"
CHAIN = "chain"
SURVIVOR_MERGED = "survivor_merged"
CYCLE = "cycle"
MERGE_RULES: dict[str, str] = {
    SELF_MERGE: "merged_id is the surviving customer_id itself",
    UNKNOWN_CUSTOMER: "merged_id was not used as customer_id by any event before the merge",
    CHAIN: "merged_id is merged into another customer already",
    SURVIVOR_MERGED: "the surviving customer_id is itself merged into another customer",
    CYCLE: "the surviving customer_id is merged into merged_id already",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An identify whose link the rules refuse; ``repeat``: its customer's profile
    applied it already (a re-delivery), so its dead letter went out before; ``retried``:
    refused by an earlier round of the same batch (counted there)."""

    item: Item
    rule: str
    repeat: bool
    retried: bool = False

    @property
    def merge(self) -> bool:
        """Whether this refuses an admin merge rather than an identify's link."""
        return self.rule in MERGE_RULES

    @property
    def detail(self) -> str:
        if self.merge:
            return (
                f"customers_merged {self.item.event.event_id}: merge refused ({self.rule}): "
                f"{MERGE_RULES[self.rule]}; nothing was merged"
            )
        return (
            f"identify {self.item.event.event_id}: link refused ({self.rule}): "
            f"{RULES[self.rule]}; the identify was applied to its customer without the link"
        )


@dataclass(slots=True)
class Stitching:
    """The batch's identity decisions."""

    links: dict[str, list[str]] = field(default_factory=dict)  # customer -> new visitors
    merges: dict[str, list[str]] = field(default_factory=dict)  # customer -> ids merged in
    conflicts: int = 0  # links refused: the visitor belongs to another customer
    refused: list[Refusal] = field(default_factory=list)  # links and merges refused
    customers: dict[str, list[str]] = field(default_factory=dict)  # survivor -> merged now


def wanted_ids(items: Iterable[Item]) -> set[str]:
    """The ids whose profiles and links a batch reads first."""
    ids: set[str] = set()
    for item in items:
        event = item.event
        if event.customer_id is not None:
            ids.add(event.customer_id)
        if event.anonymous_id is not None:
            ids.add(event.anonymous_id)
        if type(event) is CustomersMergedEvent:
            ids.add(event.properties.merged_id)
    return ids


def unresolved(view: View) -> set[str]:
    """Link targets the view does not hold yet: the batch reads them next."""
    return {t for t in view.aliases.values() if t not in view.profiles}


def known_customers(items: Iterable[Item], view: View) -> set[str]:
    """The ids used as ``customer_id``: by a stored profile's events or the batch's."""
    known = {
        profile_id
        for profile_id, stored in view.profiles.items()
        if stored.profile is not None and stored.profile.customer_id is not None
    }
    known.update(i.event.customer_id for i in items if i.event.customer_id is not None)
    return known


def customer_links(view: View) -> dict[str, str]:
    """Merged customer -> survivor: the links the survivor's profile lists as customers'."""
    out = {}
    for merged, survivor in view.aliases.items():
        stored = view.profiles.get(survivor)
        profile = stored.profile if stored is not None else None
        if profile is not None and merged in profile.merged_customers:
            out[merged] = survivor
    return out


def merge_refusal(
    survivor: str,
    merged: str,
    merged_into: dict[str, str],
    view: View,
    seen: set[str] | frozenset[str] = frozenset(),
) -> str | None:
    """The rule that refuses merging customer ``merged`` into ``survivor``; None when it
    may be merged (or was already: ``merged_into`` says so, and nothing changes).

    ``seen``: the ids the batch's events before the merge used as ``customer_id``: a
    customer first seen there is as known as a stored one."""
    if merged == survivor:
        return SELF_MERGE
    if merged_into.get(merged) == survivor:
        return None
    if survivor in merged_into:
        return CYCLE if merged_into[survivor] == merged else SURVIVOR_MERGED
    if merged in merged_into:
        return CHAIN
    if merged in seen:
        return None
    stored = view.profiles.get(merged)
    if stored is None or stored.profile is None or stored.profile.customer_id is None:
        return UNKNOWN_CUSTOMER
    return None


def resolve(profile_id: str, links: dict[str, str]) -> str:
    """The profile ``profile_id`` belongs to, following links (loops end where they close)."""
    seen = {profile_id}
    for _ in range(MAX_HOPS):
        target = links.get(profile_id)
        if target is None or target in seen:
            return profile_id
        seen.add(target)
        profile_id = target
    return profile_id


def _applied(item: Item, owner: str, view: View) -> bool:
    """Whether ``owner``'s profile applied ``item`` already (a re-delivery)."""
    stored = view.profiles.get(owner)
    return (
        stored is not None
        and stored.profile is not None
        and is_duplicate(stored.profile, item.event.event_id, item.source, item.message.offset)
    )


def stitch(items: list[Item], view: View) -> Stitching:
    """Link the batch's visitors, refuse what the rules refuse, point every item at its
    profile (``Item.target``) and list what each profile merges."""
    out = Stitching()
    merged_into = customer_links(view)
    known = known_customers(items, view) | set(merged_into)  # merged away: still a customer
    # A known customer's own link (made while it was only a visitor) no longer applies;
    # a customer link (an admin merge) does.
    links = {v: c for v, c in view.aliases.items() if v not in known or v in merged_into}
    new: list[str] = []
    merged_now: list[str] = []
    seen: set[str] = set()  # ids used as customer_id by the batch's events so far
    for item in items:
        event = item.event
        if type(event) is CustomersMergedEvent:
            survivor, merged = event.key, event.properties.merged_id
            rule = merge_refusal(survivor, merged, merged_into, view, seen)
            if (
                rule is None
                and merged_into.get(merged) != survivor
                and _applied(item, resolve(survivor, links), view)
            ):
                # Refused when first applied: ``merged`` was unknown then (the one rule
                # that can pass later). A re-delivery decides nothing again, though what
                # is stored now (a later event of ``merged``) would let it pass.
                rule = UNKNOWN_CUSTOMER
            if rule is not None:
                item.refused = rule
                owner = resolve(survivor, links)
                out.refused.append(Refusal(item, rule, _applied(item, owner, view)))
            elif merged_into.get(merged) != survivor:
                links[merged] = merged_into[merged] = survivor
                merged_now.append(merged)
            continue
        if event.customer_id is not None:
            seen.add(event.customer_id)
        if item.refused:  # refused by an earlier round of this batch: still refused
            owner = resolve(item.event.key, links)
            out.refused.append(Refusal(item, item.refused, _applied(item, owner, view), True))
            continue
        if type(event) is not IdentifyEvent or event.anonymous_id is None:
            continue
        customer, visitor = event.customer_id, event.anonymous_id
        if customer is None or visitor == customer:
            continue
        if visitor in known:
            # Applied to its customer without the link: the visitor is not listed there.
            item.event = msgspec.structs.replace(event, anonymous_id=None)
            item.refused = KNOWN_CUSTOMER
            owner = resolve(customer, links)
            out.refused.append(Refusal(item, KNOWN_CUSTOMER, _applied(item, owner, view)))
            continue
        linked_to = links.get(visitor)
        if linked_to is None:
            links[visitor] = customer
            new.append(visitor)
        elif linked_to != customer:
            out.conflicts += 1  # first link wins
    # A new link is written with the save of the profile it resolves to, and names it.
    for visitor in new:
        out.links.setdefault(resolve(visitor, links), []).append(visitor)
    for merged in merged_now:
        out.customers.setdefault(resolve(merged, links), []).append(merged)
    for item in items:
        item.target = resolve(item.event.key, links)
    # Every id read that now resolves elsewhere and still has a profile merges into it.
    for profile_id, stored in view.profiles.items():
        target = resolve(profile_id, links)
        if target != profile_id and stored.profile is not None:
            out.merges.setdefault(target, []).append(profile_id)
    for sources in out.merges.values():
        sources.sort()  # in one order whatever order the store read them in
    return out
