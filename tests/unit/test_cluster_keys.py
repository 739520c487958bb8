"""The Redis Cluster key layout: a customer's keys and its shard's shared structures on
one slot, shards spread evenly over the slots, ids with braces harmless, and the one
setting that selects it."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from cdpulse.connections import cluster_url
from cdpulse.settings import Settings
from cdpulse.store.keys import SHARDS, TAGS, ClusterKeys, Keys, shard_index

CLUSTER = ClusterKeys("cdp")


def slot(key: str) -> int:
    return key_slot(key.encode())


def id_keys(keys: Keys, profile_id: str) -> list[str]:
    return [
        keys.profile(profile_id),
        keys.alias(profile_id),
        keys.merged_into(profile_id),
        keys.hold(profile_id),
        keys.data_key(profile_id),
        keys.identities(profile_id),
        keys.claimed(profile_id),
        keys.claims(profile_id),
        keys.experiments_of(profile_id),
        keys.fired(profile_id, "t1:converted"),
    ]


def shard_keys(keys: Keys, profile_id: str) -> list[str]:
    shard = keys.shard(profile_id)
    return [
        shard.due(3, "churn"),
        shard.due(0, "trigger"),
        shard.members("vip"),
        shard.clv_summaries,
        shard.profile_count,
        shard.experiment("banner", "exposed"),
        shard.experiment("banner", "counts"),
        shard.uplift("winback"),
    ]


@given(st.text(min_size=1, max_size=40))
def test_a_customers_keys_and_its_shards_entries_share_one_slot(profile_id: str) -> None:
    slots = {slot(k) for k in (*id_keys(CLUSTER, profile_id), *shard_keys(CLUSTER, profile_id))}
    assert slots == {slot(f"{{{TAGS[shard_index(profile_id)]}}}")}


@given(st.text(min_size=1, max_size=40))
def test_braces_in_an_id_move_nothing_and_the_id_is_read_back(profile_id: str) -> None:
    braced = "{" + profile_id + "}x{"
    assert slot(CLUSTER.profile(braced)) == slot(CLUSTER.shard(braced).profile_count)
    assert CLUSTER.id_in(CLUSTER.profile(braced), "profile") == braced
    assert Keys("cdp").id_in(Keys("cdp").profile(profile_id), "profile") == profile_id


def test_shards_lie_evenly_over_the_slots() -> None:
    # Shard i's tag hashes into the i-th 1/SHARDS of the slot range, so three masters
    # with even slot ranges (redis-cli --cluster create) serve 21 or 22 shards each.
    assert len(set(TAGS)) == SHARDS
    width = REDIS_CLUSTER_HASH_SLOTS // SHARDS
    assert [slot(f"{{{tag}}}") // width for tag in TAGS] == list(range(SHARDS))
    # the ranges redis-cli --cluster create gives three masters
    masters = [range(0, 5461), range(5461, 10923), range(10923, 16384)]
    served = Counter(
        next(n for n, slots in enumerate(masters) if slot(f"{{{tag}}}") in slots) for tag in TAGS
    )
    assert sorted(served.values()) == [21, 21, 22]


def test_ids_spread_over_every_shard() -> None:
    counts = Counter(shard_index(f"cust-{n:06d}") for n in range(64_000))
    assert len(counts) == SHARDS
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


def test_one_redis_keeps_its_names_and_its_one_shard() -> None:
    keys = Keys("cdp")
    assert keys.profile("C1") == "cdp:{C1}:profile"
    assert keys.shards() == (keys.shard("C1"),) == (keys.shard("other"),)
    shard = keys.shard("C1")
    assert shard.due(2, "churn") == "cdp:{due:2}:churn"
    assert shard.members("vip") == "cdp:segment:vip:members"
    assert shard.clv_summaries == "cdp:clv:summaries"
    assert shard.profile_count == "cdp:profiles"
    assert shard.experiment("x", "counts") == "cdp:{experiment:x}:counts"
    assert shard.uplift("r") == "cdp:trigger:uplift:r"
    assert shard.head is None and not keys.cluster


def test_the_cluster_names_keep_the_id_outside_the_tag_and_the_patterns_find_them() -> None:
    tag = TAGS[shard_index("C1")]
    assert CLUSTER.profile("C1") == f"cdp:{{{tag}}}{{C1}}:profile"
    assert CLUSTER.shard("C1").head == f"cdp:{{{tag}}}{{"
    assert len(CLUSTER.shards()) == SHARDS
    members = CLUSTER.shard("C1").members("vip:1")
    assert CLUSTER.segment_in(members) == "vip:1"
    assert Keys("cdp").segment_in(Keys("cdp").shard("C1").members("vip:1")) == "vip:1"
    # not sharded: one per partition or per erased id, every reader needs all of it
    assert CLUSTER.watermark == Keys("cdp").watermark == "cdp:watermark"
    assert CLUSTER.erasure_ledger == "cdp:erasure:ledger"


def test_the_cluster_url_selects_the_cluster_and_names_the_node_redis_py_starts_from() -> None:
    settings = Settings(redis_url="redis+cluster://10.0.0.5:7001")
    assert settings.redis_cluster
    assert not Settings(redis_url="redis://127.0.0.1:6379/0").redis_cluster
    assert cluster_url("redis+cluster://u:p@h:7001") == "redis://u:p@h:7001"
    assert cluster_url("rediss+cluster://h:7001") == "rediss://h:7001"
    assert cluster_url("redis://h:6379/0") is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"redis_url": "http://h:6379"}, r"scheme must be one of redis://.*\+cluster"),
        ({"redis_url": "redis+cluster://h:7001/2"}, "database '2'.*database 0 only"),
        (
            {"redis_url": "redis+cluster://h:7001", "redis_prefix": "cdp{eu}"},
            r"CDPULSE_REDIS_PREFIX 'cdp\{eu\}' holds a brace",
        ),
    ],
)
def test_a_redis_setting_the_cluster_cannot_take_is_refused_naming_the_fix(
    variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**variables)
