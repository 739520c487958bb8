"""The right of access: everything cdpulse holds about a customer, as one JSON document.

Read from where it lives (the profile and its linked visitors, per-customer keys, the
lifetime-value summary, the churn schedule, the recommender's shopper state), so the
export cannot drift from what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from cdpulse.connections import AsyncRedis
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.model import Profile, spelt_out
from cdpulse.store.erasure import KEY_FAMILIES
from cdpulse.store.keys import keys_for


class Exporter:
    """Builds the export document of one customer."""

    def __init__(
        self,
        client: AsyncRedis,
        prefix: str,
        pseudonyms: Pseudonymizer,
        shard_of: Callable[[str], int],
    ) -> None:
        self.client = client
        self.keys = keys_for(client, prefix)
        self.pseudonyms = pseudonyms
        self.shard_of = shard_of

    async def export(
        self, profile: Profile, view: dict[str, Any], reco: RecoSnapshot | None
    ) -> dict[str, Any]:
        """``view``: the profile as ``GET /v1/profiles/{id}`` shows it, scores included."""
        ids = sorted({profile.id, *profile.anonymous_ids, *profile.merged_from})
        pipe = self.client.pipeline(transaction=False)
        shard = self.keys.shard(profile.id)
        pipe.hget(shard.clv_summaries, profile.id)
        pipe.zscore(shard.due(self.shard_of(profile.id), "churn"), profile.id)
        for i in ids:
            for family in KEY_FAMILIES.values():
                pipe.exists(family(self.keys, i))
        summary, due, *exists = await pipe.execute()
        held = [
            f"{name}:{i}"
            for (i, name), found in zip(
                [(i, name) for i in ids for name in KEY_FAMILIES], exists, strict=True
            )
            if found
        ]
        pseudonym = self.pseudonyms.of_id(profile.id)
        shopper = None if reco is None else reco.recommender.state.shopper(pseudonym)
        return {
            "customer_id": profile.customer_id,
            "profile_id": profile.id,
            "linked_ids": ids,
            "pseudonym": pseudonym,
            "profile": view,
            "stored_profile": spelt_out(profile),
            "lifetime_value_summary": None if summary is None else msgspec.json.decode(summary),
            "churn_label_due_at": None if due is None else int(due),
            "recommender_state": None if shopper is None else msgspec.to_builtins(shopper),
            "records_held": held,
        }
