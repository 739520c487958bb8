"""Redis key names. Everything about one id shares the hash tag ``{id}``, so in Redis
Cluster a customer's keys live on one slot and its Lua scripts stay single-slot."""

from __future__ import annotations

from dataclasses import dataclass


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (SCAN MATCH, ACL key patterns): a
    prefix or id holding ``*?[]\\`` must not match other keys."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (tests give each run its own prefix)."""

    prefix: str

    def profile(self, profile_id: str) -> str:
        return f"{self.prefix}:{{{profile_id}}}:profile"

    def alias(self, profile_id: str) -> str:
        return f"{self.prefix}:{{{profile_id}}}:alias"

    def merged_into(self, profile_id: str) -> str:
        """The survivor a customer was merged into by an admin merge (beside its alias):
        a save of the merged customer is refused while it stands (``write.lua``)."""
        return f"{self.prefix}:{{{profile_id}}}:merged"

    def data_key(self, profile_id: str) -> str:
        """The customer's data key (crypto-shredding): erase it and every sealed copy of
        their personal data, in Redis or in Kafka's history, is unreadable."""
        return f"{self.prefix}:{{{profile_id}}}:datakey"

    def profile_of(self, pseudonym: str) -> str:
        """The profile id behind an id's pseudonym: what the recommender's learner, which
        knows customers by pseudonym only, names a recommendation list's customer by.
        Erasure removes it, so an erased customer's pseudonym leads nowhere."""
        return f"{self.prefix}:{{{pseudonym}}}:profile_id"

    def identity(self, pseudonym: str) -> str:
        """The customer a personal trait's pseudonym belongs to (``privacy.identities``)."""
        return f"{self.prefix}:{{{pseudonym}}}:identity"

    def identities(self, profile_id: str) -> str:
        """Set: the pseudonyms whose identity entries point at the customer, every one it
        was indexed under (earlier emails too), kept by ``write.lua`` with the entries."""
        return f"{self.prefix}:{{{profile_id}}}:identities"

    def claims(self, profile_id: str) -> str:
        """List: the customer's live trigger claims (``fired``), oldest first, kept by
        ``write.lua`` with the claims: erasure finds them here instead of by SCAN."""
        return f"{self.prefix}:{{{profile_id}}}:claims"

    def experiments_of(self, profile_id: str) -> str:
        """Set: the experiments the id was exposed to, recorded before the exposure, so
        erasure finds an experiment no longer declared."""
        return f"{self.prefix}:{{{profile_id}}}:experiments"

    @property
    def erasure_ledger(self) -> str:
        """Hash: pseudonym of an erased id -> when it was erased (epoch ms)."""
        return f"{self.prefix}:erasure:ledger"

    @property
    def watermark(self) -> str:
        return f"{self.prefix}:watermark"

    def due(self, shard: int, kind: str) -> str:
        """Sorted set: profile id -> when its ``kind`` (churn, trigger) is next due, for the
        profiles of one input partition (the shard), which its owner polls."""
        return f"{self.prefix}:{{due:{shard}}}:{kind}"

    def experiment(self, name: str, part: str) -> str:
        """An experiment's ``exposed``, ``converted`` or ``counts`` hash (one slot)."""
        return f"{self.prefix}:{{experiment:{name}}}:{part}"

    def members(self, segment: str) -> str:
        """Sorted set of a segment's members (scores 0: pages in id order)."""
        return f"{self.prefix}:segment:{segment}:members"

    @property
    def churn_model(self) -> str:
        """Hash {version, blob}: the newest churn model snapshot."""
        return f"{self.prefix}:model:churn"

    @property
    def clv_summaries(self) -> str:
        """Hash: customer id -> order summary, what the lifetime-value refit reads."""
        return f"{self.prefix}:clv:summaries"

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
    def profile_count(self) -> str:
        return f"{self.prefix}:profiles"

    # --- triggers ---------------------------------------------------------------------

    def fired(self, customer_id: str, trigger_id: str) -> str:
        """The claim of an uplift tally (an exposure's trigger id, or it with
        ``:converted``), kept a while so a batch decided again does not count it twice."""
        return f"{self.prefix}:{{{customer_id}}}:trigger:{trigger_id}"

    @property
    def offer_model(self) -> str:
        """Hash {version, blob}: the newest offer policy (contextual bandits)."""
        return f"{self.prefix}:model:offers"

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

    def uplift(self, rule: str) -> str:
        """Hash: a rule's treated and holdout firings and their conversions."""
        return f"{self.prefix}:trigger:uplift:{rule}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern (and ACL key pattern) matching every key under the prefix."""
        return f"{glob_escape(self.prefix)}:*"
