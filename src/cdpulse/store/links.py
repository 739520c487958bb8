"""What a save changes outside its own slot on a Redis Cluster, and in which order.

On one Redis a save is one ``write.lua`` call: the profile's compare-and-set with the
visitors it links, the merged profiles it retires, the customers an admin merge retires
into it and the identity-index entries, all checked before anything is written. On a
Redis Cluster a script reaches one slot: a customer's save, with its schedules,
memberships, summary and counters (its shard's, ``store/keys.py``), is one script on its
shard's slot, and the ids it links or retires live on theirs. So the write takes three
steps, each one round trip for the whole batch (``RedisState.write``):

1. **hold** (``hold.lua``, per slot of those ids): the checks ``write.lua`` makes of them
   (a visitor linked to someone else or with a profile the save does not merge: -3; a
   merged profile whose version moved: -1); then the visitors are linked, and the
   profiles to retire are *held*: every save of a held id is refused (-1) until the
   write settles, or ``HOLD_MS`` passed (a writer that died);
2. **save** (``write.lua``, per shard) the saves whose holds were all granted, and the
   identity-index entries and pseudonym index of those saves (their pseudonyms' slots);
3. **settle** (``settle.lua``, per slot): for the saves written, the held profiles are
   deleted at the version merged, the merged customers get their link and merge marker
   and leave their shard's schedules, member lists and summary, their linked ids move to
   the survivor; every hold is released.

Why the profiles stay exact: a link is written before the save that merges the
visitor, so from then on every event of the visitor goes to its customer (its own save is
refused: it is linked), and a hold keeps the merged profile from changing until it is
deleted at the version that was merged. A write interrupted between the steps leaves
states the pipeline already completes on its next read (``pipeline/identity.py``): a
linked visitor whose profile is still stored merges into its customer, once (its
``merged_from``), and is retired then. A save refused after its links were made leaves
them: the stitching would make them again. What one Redis makes atomic and this does
not: the identity-index entries are set with the save, not with its compare-and-set (a
refused save's retry sets them again), and a previous owner's set of identities keeps
the pseudonym (erasure checks each entry's owner); a merged profile written after its
hold expired (a write stalled for ``HOLD_MS``) is kept, counted in
``cdpulse_cluster_retires_kept_total`` and logged: ``cdpulse rebuild`` repairs it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdpulse.pipeline.state import Save
from cdpulse.store.keys import Keys, Shard

HOLD_MS = 15_000  # a hold outlives any write's round trips; a dead writer's expires


@dataclass(slots=True)
class Reach:
    """One save's entries in other slots, by shard (``hold.lua``, ``settle.lua``)."""

    hold: dict[Shard, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    # written: what settles the saved; released: the holds of a save that was not
    settled: dict[Shard, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    released: dict[Shard, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    # commands sent with the save, to other slots, whatever its compare-and-set answers
    beside: list[tuple[Any, ...]] = field(default_factory=list)


def reach(keys: Keys, save: Save, shard_of: Callable[[str], int], retention_ms: int) -> Reach:
    """What ``save`` changes outside its shard (``keys`` a cluster's)."""
    out = Reach()
    customer = save.profile.id
    for visitor in save.links:
        version = save.retire.get(visitor, False)
        out.hold[keys.shard(visitor)].append(["link", visitor, customer, version])
    for retired, version in save.retire.items():
        shard = keys.shard(retired)
        if retired not in save.links:
            out.hold[shard].append(["retire", retired, version])
        out.settled[shard].append(["retire", retired, version])
        out.released[shard].append(["release", retired])
    for merged, gone in save.customers.items():
        shard = keys.shard(merged)
        partition = shard_of(merged)
        left = [shard.due(partition, "churn"), shard.due(partition, "trigger")]
        left += [shard.members(segment) for segment in gone.segments]
        out.settled[shard].append(["gone", merged, customer, left, [shard.clv_summaries]])
        for linked in gone.linked:
            out.settled[keys.shard(linked)].append(["move", linked, merged, customer])
    expiry: tuple[Any, ...] = ("PX", retention_ms) if retention_ms > 0 else ()
    for pseudonym in save.identities:
        out.beside.append(("SET", keys.identity(pseudonym), customer, *expiry))
    if save.pseudonym is not None:
        out.beside.append(("SET", keys.profile_of(save.pseudonym), customer, "NX", *expiry))
    return out
