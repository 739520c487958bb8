"""Erasure in Redis (the right to be forgotten): every key of a customer and of the visitors
linked to it, in one place that later features extend.

Two ways a key is found, so that a feature cannot forget to erase:

* ``KEY_FAMILIES``: every per-customer key family, by name. A feature that keeps keys
  of its own per customer adds its family here; the audit record counts removals per
  family.
* the sweep: every key under the customer's hash tag, ``{prefix}:{<id>}:*``. A family
  that keeps to the hash-tag convention (``store/keys.py``) is erased even if nobody
  registered it. The sweep SCANs the keyspace: erasures are rare, and it costs about a
  second per million keys.

State that is not keyed by customer (a hash field, a sorted-set member, the
recommender's snapshot) is listed in ``_erase_shared`` and in the worker's forget
record to the recommender. Tombstones for compacted topics and the audit record are
published by the worker from the returned ``Erasure``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis

from cdpulse.privacy.erasure import Erasure, iso
from cdpulse.privacy.ledger import Ledger
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.model import Profile, decode
from cdpulse.store.identities import IdentityIndex
from cdpulse.store.keys import Keys

KeyFamily = Callable[[Keys, str], str]

# name -> the key of one id. The integrator adds the families of new features here.
KEY_FAMILIES: dict[str, KeyFamily] = {
    "profile": Keys.profile,
    "alias": Keys.alias,
    "data_key": Keys.data_key,
}


class Eraser:
    """Erases customers from Redis and records them in the ledger."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        ledger: Ledger,
        pseudonyms: Pseudonymizer,
        sweep: bool = True,
        personal: frozenset[str] = frozenset({"email", "phone"}),
        shard_of: Callable[[str], int] = lambda profile_id: 0,
    ) -> None:
        self.client = client
        self.shard_of = shard_of
        self.identities = IdentityIndex(client, prefix)
        self.personal = personal
        self.keys = Keys(prefix)
        self.ledger = ledger
        self.pseudonyms = pseudonyms
        self.sweep = sweep

    async def erased(self, ids: list[str]) -> set[str]:
        return await self.ledger.erased(ids)

    async def linked(self, profile_id: str) -> tuple[str, list[str], Profile | None]:
        """The customer ``profile_id`` belongs to, every id linked to it, its profile."""
        alias = await self.client.get(self.keys.alias(profile_id))
        customer = alias.decode() if isinstance(alias, bytes) else profile_id
        blob = await self.client.hget(self.keys.profile(customer), "b")
        ids = {profile_id, customer}
        profile = decode(blob) if isinstance(blob, bytes) else None
        if profile is not None:
            ids.update(profile.anonymous_ids)
            ids.update(profile.merged_from)
        return customer, sorted(ids), profile

    async def erase(
        self,
        profile_id: str,
        requested_by: str,
        event_id: str,
        requested_at: int,
        also: Sequence[str] = (),
    ) -> Erasure:
        """Erase the customer of ``profile_id``, every id linked to it, and ``also``
        (visitors the same batch links to it)."""
        customer, ids, profile = await self.linked(profile_id)
        ids = sorted({*ids, *also})
        now = datetime.now(UTC)
        # The ledger first: from here on, no event of these ids is applied again.
        await self.ledger.record(ids, int(now.timestamp() * 1000))
        removed: dict[str, int] = {}
        pipe = self.client.pipeline(transaction=False)
        names = [name for name in KEY_FAMILIES for _ in ids]
        for family in KEY_FAMILIES.values():
            for i in ids:
                pipe.delete(family(self.keys, i))
        # The index of pseudonyms the recommender's lists are named by (``Keys.profile_of``).
        for i in ids:
            pipe.delete(self.keys.profile_of(self.pseudonyms.of_id(i)))
        found = await pipe.execute()
        for name, n in zip(names, found[: len(names)], strict=True):
            removed[name] = removed.get(name, 0) + int(n)
        removed["pseudonym_index"] = sum(int(n) for n in found[len(names) :])
        removed.update(await self._erase_shared(ids))
        if profile is not None:
            removed["identity"] = await self.identities.forget(profile, self.personal)
        if removed.get("profile"):
            await self.client.decrby(self.keys.profile_count, removed["profile"])
        if self.sweep:
            removed["swept"] = await self._sweep(ids)
        return Erasure(
            subject=self.pseudonyms.of_id(customer),
            ids=ids,
            requested_by=requested_by,
            event_id=event_id,
            requested_at=iso(requested_at),
            erased_at=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            removed=removed,
        )

    async def _erase_shared(self, ids: list[str]) -> dict[str, int]:
        """Entries of the customer in keys shared by all customers."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self.keys.clv_summaries, *ids)
        for i in ids:
            pipe.zrem(self.keys.due(self.shard_of(i), "churn"), i)
        for i in ids:
            pipe.zrem(self.keys.due(self.shard_of(i), "trigger"), i)
        lifetime, *scheduled = await pipe.execute()
        churn = sum(int(n) for n in scheduled[: len(ids)])
        triggers = sum(int(n) for n in scheduled[len(ids) :])
        # Segment member lists and experiment exposures are keyed by segment or
        # experiment, not by customer: found by pattern (a few keys per definition).
        prefix = self.keys.prefix
        members = exposures = 0
        async for key in self.client.scan_iter(f"{prefix}:segment:*:members", 1000):
            members += int(await self.client.zrem(key, *ids))
        for part in ("exposed", "converted"):
            async for key in self.client.scan_iter(f"{prefix}:{{experiment:*}}:{part}", 1000):
                exposures += int(await self.client.hdel(key, *ids))
        return {
            "lifetime_value_summary": int(lifetime),
            "churn_schedule": int(churn),
            "trigger_schedule": int(triggers),
            "segment_memberships": members,
            "experiment_records": exposures,
        }

    async def _sweep(self, ids: list[str]) -> int:
        """Delete whatever else lives under the ids' hash tags (unregistered families)."""
        swept = 0
        for i in ids:
            found = [k async for k in self.client.scan_iter(self.keys.of_customer(i), 1000)]
            if found:
                swept += int(await self.client.delete(*found))
        return swept
