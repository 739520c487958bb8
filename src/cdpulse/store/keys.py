"""Redis key names, for one Redis (``Keys``) and for a Redis Cluster (``ClusterKeys``).

Two kinds of keys: those of one id (its profile, link, data key, claims…), named from the
id, and the *shared structures* every customer has an entry in (due schedules, segment
member lists, lifetime-value summaries, experiment and trigger counters, the profile
count), split into shards (``Shard``). A writer names the shard of the customer it
writes (``Keys.shard``); a reader of the whole structure gathers every shard
(``Keys.shards``).

One Redis: an id's keys are ``{prefix}:{<id>}:<kind>`` and there is one shard, named as
it always was (``{prefix}:clv:summaries``…). A Redis Cluster: ids are spread over
``SHARDS`` fixed shards, each a hash tag, and an id's keys and its shard's entries share
that tag: ``{prefix}:{<tag>}{<id>}:<kind>`` and ``{prefix}:{<tag>}:clv:summaries``. So a
customer's save, with its schedule, memberships, summary and counters, is one Lua script
on one slot (``store/state.py``), and no key holds every customer. The id itself stays
outside the hash tag, so braces in an id move nothing: the tag is derived from the id,
never taken from it. The prefix must hold no brace (``Settings``).

``SHARDS`` is part of every key name of a cluster deployment: changing it means
rebuilding the store (``cdpulse rebuild``). Each tag is picked so that the shards lie
evenly over the 16,384 slots: a cluster made with even slot ranges (``redis-cli
--cluster create``) gives each master an even share.

Not sharded, because each is one entry per partition or per erased id, never one per
customer, and every reader needs all of it: the watermarks and the erasure ledger;
nor the models' snapshots (one key each).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SHARDS = 64


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (SCAN MATCH, ACL key patterns): a
    prefix or id holding ``*?[]\\`` must not match other keys."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def shard_index(text: str) -> int:
    """Which of the ``SHARDS`` shards an id (or pseudonym) belongs to in a Redis Cluster."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % SHARDS


def _spread_tags() -> tuple[str, ...]:
    """The hash tag of each shard: ``s<shard>.<n>`` with the smallest ``n`` whose slot
    lies in the shard's 1/SHARDS of the slot range (deterministic: part of key names)."""
    tags = []
    for shard in range(SHARDS):
        low = shard * REDIS_CLUSTER_HASH_SLOTS // SHARDS
        high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // SHARDS
        n = 0
        while not low <= key_slot(f"s{shard}.{n}".encode()) < high:
            n += 1
        tags.append(f"s{shard}.{n}")
    return tuple(tags)


TAGS = _spread_tags()


@dataclass(frozen=True, slots=True)
class Shard:
    """One share of the shared structures: the only one on a single Redis, where the
    names are the ones cdpulse always used. ``base``: what every name starts with."""

    base: str

    def due(self, partition: int, kind: str) -> str:
        """Sorted set: profile id -> when its ``kind`` (churn, trigger) is next due, for the
        profiles of one input partition, which its owner polls."""
        return f"{self.base}:{{due:{partition}}}:{kind}"

    def experiment(self, name: str, part: str) -> str:
        """An experiment's ``exposed``, ``converted`` or ``counts`` hash (one slot)."""
        return f"{self.base}:{{experiment:{name}}}:{part}"

    def members(self, segment: str) -> str:
        """Sorted set of a segment's members (scores 0: pages in id order)."""
        return f"{self.base}:segment:{segment}:members"

    @property
    def clv_summaries(self) -> str:
        """Hash: customer id -> order summary, what the lifetime-value refit reads."""
        return f"{self.base}:clv:summaries"

    @property
    def profile_count(self) -> str:
        """How many profiles are stored (in this shard)."""
        return f"{self.base}:profiles"

    def uplift(self, rule: str) -> str:
        """Hash: a rule's treated and holdout firings and their conversions."""
        return f"{self.base}:trigger:uplift:{rule}"

    @property
    def head(self) -> str | None:
        """What the Lua scripts start an id's key names with, for ids of this shard; None:
        they name them as one Redis does (``{prefix}:{<id>}:``)."""
        return None


@dataclass(frozen=True, slots=True)
class ClusterShard(Shard):
    """One of the ``SHARDS`` shards of a Redis Cluster: ``base`` is ``{prefix}:{<tag>}``,
    so all its keys, and the keys of its ids, are on the tag's slot."""

    def due(self, partition: int, kind: str) -> str:
        return f"{self.base}:due:{partition}:{kind}"

    def experiment(self, name: str, part: str) -> str:
        return f"{self.base}:experiment:{name}:{part}"

    @property
    def head(self) -> str:
        return f"{self.base}{{"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix on one Redis (tests give each run its own prefix)."""

    prefix: str
    _shards: tuple[Shard, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_shards", self._make_shards())

    def _make_shards(self) -> tuple[Shard, ...]:
        return (Shard(self.prefix),)

    @property
    def cluster(self) -> bool:
        """Whether these are a Redis Cluster's names."""
        return False

    def of(self, key_id: str) -> str:
        """What every key of ``key_id`` (an id, or a pseudonym) starts with."""
        return f"{self.prefix}:{{{key_id}}}:"

    def shard(self, key_id: str) -> Shard:
        """The shard holding ``key_id``'s entries in the shared structures."""
        return self._shards[0]

    def shards(self) -> tuple[Shard, ...]:
        """Every shard: what a reader of a whole shared structure gathers."""
        return self._shards

    def id_in(self, key: str, kind: str) -> str:
        """The id a key of ``kind`` (``profile``, ``alias``…) was named from."""
        return key.removeprefix(f"{self.prefix}:{{").removesuffix(f"}}:{kind}")

    # --- an id's keys ------------------------------------------------------------------

    def profile(self, profile_id: str) -> str:
        return f"{self.of(profile_id)}profile"

    def alias(self, profile_id: str) -> str:
        return f"{self.of(profile_id)}alias"

    def merged_into(self, profile_id: str) -> str:
        """The survivor a customer was merged into by an admin merge (beside its alias):
        a save of the merged customer is refused while it stands (``write.lua``)."""
        return f"{self.of(profile_id)}merged"

    def hold(self, profile_id: str) -> str:
        """A Redis Cluster write's hold on an id it links or retires in other slots
        (``store/links.py``): saves of the id are refused while it stands."""
        return f"{self.of(profile_id)}hold"

    def data_key(self, profile_id: str) -> str:
        """The customer's data key (crypto-shredding): erase it and every sealed copy of
        their personal data, in Redis or in Kafka's history, is unreadable."""
        return f"{self.of(profile_id)}datakey"

    def profile_of(self, pseudonym: str) -> str:
        """The profile id behind an id's pseudonym: what the recommender's learner, which
        knows customers by pseudonym only, names a recommendation list's customer by.
        Erasure removes it, so an erased customer's pseudonym leads nowhere."""
        return f"{self.of(pseudonym)}profile_id"

    def identity(self, pseudonym: str) -> str:
        """The customer a personal trait's pseudonym belongs to (``privacy.identities``)."""
        return f"{self.of(pseudonym)}identity"

    def identities(self, profile_id: str) -> str:
        """Hash, pseudonym -> '': the pseudonyms whose identity entries point at the
        customer, every one it was indexed under (earlier emails too), kept by
        ``write.lua`` with the entries. A pseudonym is stored without its ``hmac:``
        (``store/identities.py``): 64 bytes, so the hash stays a listpack."""
        return f"{self.of(profile_id)}identities"

    def claimed(self, customer_id: str) -> str:
        """Hash: the customer's uplift claims, each an exposure's trigger id (or it with
        ``:converted``) -> when it lapses (epoch ms), kept a while so a batch decided
        again does not count a tally twice (``write.lua``). One key per customer, not
        per claim; it expires with its newest claim."""
        return f"{self.of(customer_id)}claimed"

    def claims(self, profile_id: str) -> str:
        """List: the claim keys (``fired``) an earlier version kept, oldest first.
        Nothing adds to it now; erasure still reads it until it expires."""
        return f"{self.of(profile_id)}claims"

    def experiments_of(self, profile_id: str) -> str:
        """Set: the experiments the id was exposed to, recorded before the exposure, so
        erasure finds an experiment no longer declared."""
        return f"{self.of(profile_id)}experiments"

    def fired(self, customer_id: str, trigger_id: str) -> str:
        """An earlier version's claim of an uplift tally (now a field of ``claimed``): one
        still standing counts as claimed, and erasure deletes it (``claims``)."""
        return f"{self.of(customer_id)}trigger:{trigger_id}"

    # --- not sharded -------------------------------------------------------------------

    @property
    def erasure_ledger(self) -> str:
        """Hash: pseudonym of an erased id -> when it was erased (epoch ms)."""
        return f"{self.prefix}:erasure:ledger"

    @property
    def watermark(self) -> str:
        """Hash: ``topic:partition`` -> the newest event time a batch of it applied."""
        return f"{self.prefix}:watermark"

    @property
    def churn_model(self) -> str:
        """Hash {version, blob}: the newest churn model snapshot."""
        return f"{self.prefix}:model:churn"

    @property
    def campaign_model(self) -> str:
        """Hash {version, blob}: the newest campaign-response model snapshot."""
        return f"{self.prefix}:model:campaign"

    @property
    def persona_model(self) -> str:
        """Hash {version, blob}: the newest personas (models/personas_learner.py)."""
        return f"{self.prefix}:model:personas"

    @property
    def clv_model(self) -> str:
        """Hash {version, blob}: the newest lifetime-value parameters."""
        return f"{self.prefix}:model:clv"

    def reco_model(self, shard: int) -> str:
        """Hash {version, blob}: the newest snapshot of one recommender shard."""
        return f"{self.prefix}:model:reco:{shard}"

    @property
    def reco_shards(self) -> str:
        """Set of the recommender shards (reco-events partitions) with a snapshot."""
        return f"{self.prefix}:model:reco:shards"

    @property
    def clv_lock(self) -> str:
        return f"{self.prefix}:clv:refit-lock"

    @property
    def forecast_model(self) -> str:
        """Hash {version, blob}: the newest demand forecasts (``models/forecast``)."""
        return f"{self.prefix}:model:forecast"

    @property
    def forecast_lock(self) -> str:
        return f"{self.prefix}:forecast:learn-lock"

    @property
    def offer_model(self) -> str:
        """Hash {version, blob}: the newest offer policy (contextual bandits)."""
        return f"{self.prefix}:model:offers"

    # --- input health (monitors/health.py) --------------------------------------------

    def input_gate(self, model: str) -> str:
        """Hash event-time hour -> reason: the hours a worker found ``model``'s inputs
        broken in (one key per model, never per customer: not sharded)."""
        return f"{self.prefix}:gate:{model}"

    @property
    def input_gate_judged(self) -> str:
        """Hash input partition -> the newest hour its owner judged (only raised)."""
        return f"{self.prefix}:gate:judged"

    # --- drift (models/drift.py) -------------------------------------------------------

    def drift_monitor(self, model: str, unit: int) -> str:
        """A learner's drift monitor of one model (``unit``: its shard, 0 for one)."""
        return f"{self.prefix}:drift:{model}:{unit}"

    def drift_units(self, model: str) -> str:
        """Set: the units of ``model`` with a saved drift monitor."""
        return f"{self.prefix}:drift:{model}:units"

    def drift_report(self, model: str) -> str:
        """JSON: the newest drift report of ``model``."""
        return f"{self.prefix}:drift:{model}:report"

    @property
    def drift_lock(self) -> str:
        return f"{self.prefix}:drift:lock"

    @property
    def fairness_report(self) -> str:
        """JSON: the newest fairness report (``models/fairness.py``)."""
        return f"{self.prefix}:fairness:report"

    @property
    def fairness_lock(self) -> str:
        return f"{self.prefix}:fairness:lock"

    @property
    def pattern(self) -> str:
        """A SCAN pattern (and ACL key pattern) matching every key under the prefix."""
        return f"{glob_escape(self.prefix)}:*"

    def ids_pattern(self, kind: str) -> str:
        """A SCAN pattern matching every id's key of ``kind`` (``profile``, ``alias``…)."""
        return f"{glob_escape(self.prefix)}:{{*}}:{kind}"

    def shared_pattern(self, name: str) -> str:
        """A SCAN pattern matching a shared structure's key in every shard: ``name``, a
        glob, is what follows the shard's base (``segment:*:members``)."""
        return f"{glob_escape(self.prefix)}:{name}"

    def after_shard(self, key: str) -> str:
        """What a shared structure's key holds after its shard's base (``Shard.base``)."""
        return key.removeprefix(f"{self.prefix}:")

    def segment_in(self, key: str) -> str:
        """The segment a member list (``Shard.members``) is of."""
        return self.after_shard(key).removeprefix("segment:").removesuffix(":members")


@dataclass(frozen=True, slots=True)
class ClusterKeys(Keys):
    """Key names under one prefix on a Redis Cluster: ``{prefix}:{<tag>}{<id>}:<kind>``."""

    def _make_shards(self) -> tuple[Shard, ...]:
        return tuple(ClusterShard(f"{self.prefix}:{{{tag}}}") for tag in TAGS)

    @property
    def cluster(self) -> bool:
        return True

    def of(self, key_id: str) -> str:
        return f"{self.prefix}:{{{TAGS[shard_index(key_id)]}}}{{{key_id}}}:"

    def shard(self, key_id: str) -> Shard:
        return self._shards[shard_index(key_id)]

    def id_in(self, key: str, kind: str) -> str:
        tagged = key.removeprefix(f"{self.prefix}:{{")
        return tagged[tagged.index("}{") + 2 :].removesuffix(f"}}:{kind}")

    def shared_pattern(self, name: str) -> str:
        return f"{glob_escape(self.prefix)}:{{*}}:{name}"

    def after_shard(self, key: str) -> str:
        tagged = key.removeprefix(f"{self.prefix}:{{")
        return tagged[tagged.index("}:") + 2 :]


def keys_for(client: object, prefix: str) -> Keys:
    """The names ``client`` finds keys under: a Redis Cluster's when it is a cluster
    client (``connections``: the URL decides), else one Redis's."""
    if isinstance(client, (aioredis.RedisCluster, redis.RedisCluster)):
        return ClusterKeys(prefix)
    return Keys(prefix)
