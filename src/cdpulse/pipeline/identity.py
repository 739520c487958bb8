"""Identity stitching for one batch: which profile each event belongs to, which visitors
merge into which customer, which links the batch's write makes.

``identify`` with an ``anonymous_id`` links that visitor to the customer. The first link
wins: a visitor already linked to another customer stays there (a shared device, say).
A link that would close a loop (the customer is, through its own links, that visitor)
is refused as well. Every id resolves through the links to its profile; a visitor whose
profile is still stored (merged by an earlier, interrupted attempt, or never merged)
merges into the customer it resolves to, exactly once (``Profile.merged_from``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cdpulse.contract.mirror import IdentifyEvent
from cdpulse.pipeline.decode import Item
from cdpulse.pipeline.state import View

MAX_HOPS = 8  # links never chain in practice; a bound keeps a hostile graph finite


@dataclass(slots=True)
class Stitching:
    """The batch's identity decisions."""

    links: dict[str, list[str]] = field(default_factory=dict)  # customer -> new visitors
    merges: dict[str, list[str]] = field(default_factory=dict)  # customer -> ids merged in
    conflicts: int = 0  # links refused: the visitor belongs to another customer, or a loop


def wanted_ids(items: Iterable[Item]) -> set[str]:
    """The ids whose profiles and links a batch reads first."""
    ids: set[str] = set()
    for item in items:
        event = item.event
        if event.customer_id is not None:
            ids.add(event.customer_id)
        if event.anonymous_id is not None:
            ids.add(event.anonymous_id)
    return ids


def unresolved(view: View) -> set[str]:
    """Link targets the view does not hold yet: the batch reads them next."""
    return {t for t in view.aliases.values() if t not in view.profiles}


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


def stitch(items: list[Item], view: View) -> Stitching:
    """Link the batch's visitors, point every item at its profile (``Item.target``) and
    list what each profile merges."""
    out = Stitching()
    links = dict(view.aliases)
    new: list[str] = []
    for item in items:
        event = item.event
        if type(event) is not IdentifyEvent or event.anonymous_id is None:
            continue
        customer, visitor = event.customer_id, event.anonymous_id
        if customer is None or visitor == customer:
            continue
        linked_to = links.get(visitor)
        if linked_to is None and resolve(customer, links) != visitor:
            links[visitor] = customer
            new.append(visitor)
        elif linked_to != customer:
            out.conflicts += 1  # first link wins; a loop is never closed
    # A new link is written with the save of the profile it resolves to, and names it.
    for visitor in new:
        out.links.setdefault(resolve(visitor, links), []).append(visitor)
    for item in items:
        item.target = resolve(item.event.key, links)
    # Every id read that now resolves elsewhere and still has a profile merges into it.
    for profile_id, stored in view.profiles.items():
        target = resolve(profile_id, links)
        if target != profile_id and stored.profile is not None:
            out.merges.setdefault(target, []).append(profile_id)
    return out
