"""Erasure in Redis (the right to be forgotten): every key of a customer and of the visitors
linked to it, in one place that later features extend.

Every key is found by name, never by SCAN (an erasure runs inside a worker's batch, and
a SCAN costs about a second per million keys of the whole database):

* ``KEY_FAMILIES``: every per-customer key family, by name from each id. A feature that
  keeps keys of its own per customer adds its family here; the audit record counts
  removals per family.
* per-customer indexes the writers keep in the same script call that creates what they
  list (``write.lua``): every identity-index pseudonym pointing at the customer
  (``Keys.identities``: earlier emails too), the claim keys an earlier version kept
  (``Keys.claims``; the customer's claims are one key now, ``Keys.claimed``), and,
  before an exposure, the experiments it was exposed to (``Keys.experiments_of``).
* shared structures by configuration: the segments of the worker's book and those the
  profile records, the declared experiments and the indexed ones, the schedules of the
  ids' shards, the lifetime-value summaries.

An erasure is two calls: ``find`` says whom it erases, the worker puts their ledger
entries on the ledger's topic (acknowledged), then ``erase`` records them in the Redis
ledger and deletes. Tombstones for compacted topics and the audit record are published
by the worker from the returned ``Erasure``; the recommender's snapshot forgets by a
forget record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.exceptions import ResponseError

from cdpulse.connections import AsyncRedis
from cdpulse.privacy.erasure import Erasure, iso
from cdpulse.privacy.identities import pseudonyms_of
from cdpulse.privacy.ledger import Ledger
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.model import Profile, decode
from cdpulse.store.identities import pseudonym
from cdpulse.store.keys import Keys, Shard, keys_for

KeyFamily = Callable[[Keys, str], str]

# name -> the key of one id. The integrator adds the families of new features here.
KEY_FAMILIES: dict[str, KeyFamily] = {
    "profile": Keys.profile,  # first: ``Eraser.erase`` counts profiles by its deletes
    "alias": Keys.alias,
    "merged_into": Keys.merged_into,
    "data_key": Keys.data_key,
    "identities": Keys.identities,
    "claimed": Keys.claimed,
    "claims": Keys.claims,
    "experiments": Keys.experiments_of,
}


class Eraser:
    """Erases customers from Redis and records them in the ledger. ``segments`` and
    ``experiments``: the names configured (the worker's segment book and declared
    experiments), whose shared member lists and exposure hashes are cleaned."""

    def __init__(
        self,
        client: AsyncRedis,
        prefix: str,
        ledger: Ledger,
        pseudonyms: Pseudonymizer,
        personal: frozenset[str] = frozenset({"email", "phone"}),
        shard_of: Callable[[str], int] = lambda profile_id: 0,
        segments: Sequence[str] = (),
        experiments: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.shard_of = shard_of
        self.personal = personal
        self.keys = keys_for(client, prefix)
        self.ledger = ledger
        self.pseudonyms = pseudonyms
        self.segments = tuple(segments)
        self.experiments = tuple(experiments)

    async def erased(self, ids: list[str]) -> set[str]:
        return await self.ledger.erased(ids)

    async def find(self, profile_id: str, also: Sequence[str] = ()) -> Targets:
        """Whom erasing ``profile_id`` erases: its customer, every id linked to it, and
        ``also`` (visitors the same batch links to it). Nothing is changed yet."""
        alias = await self.client.get(self.keys.alias(profile_id))
        customer = alias.decode() if isinstance(alias, bytes) else profile_id
        blob = await self.client.hget(self.keys.profile(customer), "b")
        ids = {profile_id, customer, *also}
        profile = decode(blob) if isinstance(blob, bytes) else None
        if profile is not None:
            listed = sorted({*profile.anonymous_ids, *profile.merged_from} - ids)
            ids.update(await self._still_linked(customer, listed))
        ordered = sorted(ids)
        return Targets(customer, ordered, [self.pseudonyms.of_id(i) for i in ordered], profile)

    async def _still_linked(self, customer: str, listed: list[str]) -> list[str]:
        """The ids of ``listed`` that still belong to ``customer``: not linked to another
        customer (a first link elsewhere won) and without a profile of their own (a
        visitor that became a customer of its own: ``pipeline/identity.py``)."""
        if not listed:
            return []
        pipe = self.client.pipeline(transaction=False)
        for i in listed:
            pipe.get(self.keys.alias(i))
            pipe.exists(self.keys.profile(i))
        replies = await pipe.execute()
        mine = customer.encode()
        return [
            i
            for n, i in enumerate(listed)
            if replies[2 * n] in (None, mine) and not replies[2 * n + 1]
        ]

    async def erase(
        self,
        targets: Targets,
        requested_by: str,
        event_id: str,
        requested_at: int,
        erased_at: int,
    ) -> Erasure:
        """Erase ``targets`` (``find``): the Redis ledger first, then every key.

        The caller has put the ledger's entries on its topic before (acknowledged), so a
        rebuild into an empty Redis keeps them erased too (``pipeline.batch``).
        """
        customer, ids, profile = targets.customer, targets.ids, targets.profile
        # The ledger first: from here on, no event of these ids is applied again.
        await self.ledger.record(ids, erased_at)
        # The indexes before the keys that hold them go.
        found = await self._indexed(ids, profile)
        removed: dict[str, int] = {}
        pipe = self.client.pipeline(transaction=False)
        names = [name for name in KEY_FAMILIES for _ in ids]
        for family in KEY_FAMILIES.values():
            for i in ids:
                pipe.delete(family(self.keys, i))
        # The index of pseudonyms the recommender's lists are named by (``Keys.profile_of``).
        for i in ids:
            pipe.delete(self.keys.profile_of(self.pseudonyms.of_id(i)))
        # One key per DEL: in Redis Cluster these live on slots of their own.
        for key in (*found.identities, *found.claims):
            pipe.delete(key)
        deleted = [int(n) for n in await pipe.execute()]
        for name, n in zip(names, deleted, strict=False):
            removed[name] = removed.get(name, 0) + n
        at = len(names) + len(ids)
        removed["pseudonym_index"] = sum(deleted[len(names) : at])
        removed["identity"] = sum(deleted[at : at + len(found.identities)])
        removed["trigger_claims"] = found.claimed + sum(deleted[at + len(found.identities) :])
        segments = {*self.segments, *(profile.segments if profile is not None else ())}
        experiments = {*self.experiments, *found.experiments}
        removed.update(await self._erase_shared(ids, sorted(segments), sorted(experiments)))
        if removed.get("profile"):
            # Counted per shard (one on one Redis): the ids whose profile was deleted,
            # the first family's deletes.
            gone: Counter[Shard] = Counter(
                self.keys.shard(i) for i, n in zip(ids, deleted[: len(ids)], strict=True) if n
            )
            pipe = self.client.pipeline(transaction=False)
            for shard, n in gone.items():
                pipe.decrby(shard.profile_count, n)
            await pipe.execute()
        return Erasure(
            subject=self.pseudonyms.of_id(customer),
            ids=ids,
            requested_by=requested_by,
            event_id=event_id,
            requested_at=iso(requested_at),
            erased_at=iso(erased_at),
            removed=removed,
        )

    async def _indexed(self, ids: list[str], profile: Profile | None) -> Indexed:
        """What the ids' indexes list: identity entries still pointing at one of them,
        claims, experiments."""
        width = 4  # replies per id
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hkeys(self.keys.identities(i))
            pipe.hkeys(self.keys.claimed(i))
            pipe.lrange(self.keys.claims(i), 0, -1)
            pipe.smembers(self.keys.experiments_of(i))
        replies = await pipe.execute(raise_on_error=False)
        for n, i in enumerate(ids):
            if isinstance(replies[width * n], ResponseError):
                # A set of identities an earlier version wrote (write.lua makes it a hash
                # when the customer is next written).
                replies[width * n] = await self.client.smembers(self.keys.identities(i))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        # The profile's current traits too: entries written before the identities set was.
        pseudonyms = set(pseudonyms_of(profile.traits, self.personal)) if profile else set()
        claimed = 0
        claims: list[str] = []
        experiments: set[str] = set()
        for n in range(len(ids)):
            pseudonyms.update(pseudonym(p) for p in replies[width * n])
            claimed += len(replies[width * n + 1])
            claims.extend(_text(c) for c in replies[width * n + 2])
            experiments.update(_text(e) for e in replies[width * n + 3])
        candidates = [self.keys.identity(p) for p in sorted(pseudonyms)]
        pipe = self.client.pipeline(transaction=False)
        for key in candidates:
            pipe.get(key)  # not MGET: each entry is on its pseudonym's slot
        owners = await pipe.execute() if candidates else []
        # An entry another customer took since (they gave that email later) is theirs.
        mine = {i.encode() for i in ids}
        identities = [k for k, owner in zip(candidates, owners, strict=True) if owner in mine]
        return Indexed(identities, claimed, claims, experiments)

    async def _erase_shared(
        self, ids: list[str], segments: list[str], experiments: list[str]
    ) -> dict[str, int]:
        """Entries of the ids in keys shared by all customers, found by name (in each
        id's shard on a Redis Cluster)."""
        by_shard: dict[Shard, list[str]] = defaultdict(list)
        for i in ids:
            by_shard[self.keys.shard(i)].append(i)
        counted: list[str] = []  # what each command's reply counts
        pipe = self.client.pipeline(transaction=False)
        for shard, group in by_shard.items():
            pipe.hdel(shard.clv_summaries, *group)
            counted.append("lifetime_value_summary")
            for i in group:
                for kind, name in (("churn", "churn_schedule"), ("trigger", "trigger_schedule")):
                    pipe.zrem(shard.due(self.shard_of(i), kind), i)
                    counted.append(name)
            for segment in segments:
                pipe.zrem(shard.members(segment), *group)
                counted.append("segment_memberships")
            for experiment in experiments:
                for part in ("exposed", "converted"):
                    pipe.hdel(shard.experiment(experiment, part), *group)
                    counted.append("experiment_records")
        removed = dict.fromkeys(
            (
                "lifetime_value_summary",
                "churn_schedule",
                "trigger_schedule",
                "segment_memberships",
                "experiment_records",
            ),
            0,
        )
        for name, n in zip(counted, await pipe.execute(), strict=True):
            removed[name] += int(n)
        return removed


@dataclass(frozen=True, slots=True)
class Targets:
    """Whom one erasure request erases, found before anything is recorded or deleted."""

    customer: str
    ids: list[str]
    pseudonyms: list[str]  # of ``ids``, in their order: the ledger's keys
    profile: Profile | None


@dataclass(frozen=True, slots=True)
class Indexed:
    """What a customer's indexes list: identity keys to delete, how many claims its claims
    hash holds, an earlier version's claim keys, experiments."""

    identities: list[str]
    claimed: int
    claims: list[str]
    experiments: set[str]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
