"""What a save changes outside its own slot on a Redis Cluster (``store/links.py``): each
entry in the shard of the id it names, so that ``hold.lua`` and ``settle.lua`` stay on one
slot, and everything ``write.lua`` does with those ids on one Redis accounted for."""

from __future__ import annotations

from redis.crc import key_slot

from cdpulse.pipeline.state import MergedCustomer, Save
from cdpulse.profile.model import Profile
from cdpulse.store.keys import ClusterKeys
from cdpulse.store.links import reach

KEYS = ClusterKeys("cdp")


def partition(profile_id: str) -> int:
    return len(profile_id) % 4


def test_links_retires_and_a_merged_customer_go_to_their_own_shards() -> None:
    save = Save(
        Profile(id="C", customer_id="C"),
        7,
        links=["V-new", "V-merged"],
        retire={"V-merged": 3, "W-linked": 2, "G": 5},
        customers={"G": MergedCustomer(linked=["L"], segments=["vip"])},
        identities=["hmac:e1"],
        pseudonym="hmac:c",
    )
    found = reach(KEYS, save, partition, retention_ms=1000)

    def entries(by_shard: dict[object, list[list[object]]]) -> list[list[object]]:
        return sorted((e for shard_entries in by_shard.values() for e in shard_entries), key=str)

    assert entries(found.hold) == sorted(
        [
            ["link", "V-new", "C", False],  # no profile of its own may be there
            ["link", "V-merged", "C", 3],  # merged at version 3: linked and held
            ["retire", "W-linked", 2],  # linked before, merged now: held
            ["retire", "G", 5],  # the merged customer: held until it settles
        ],
        key=str,
    )
    g, at = KEYS.shard("G"), partition("G")
    assert entries(found.settled) == sorted(
        [
            ["retire", "V-merged", 3],
            ["retire", "W-linked", 2],
            ["retire", "G", 5],
            [
                "gone",
                "G",
                "C",
                [g.due(at, "churn"), g.due(at, "trigger"), g.members("vip")],
                [g.clv_summaries],
            ],
            ["move", "L", "G", "C"],
        ],
        key=str,
    )
    assert entries(found.released) == sorted(
        [["release", i] for i in ("V-merged", "W-linked", "G")], key=str
    )
    assert found.beside == [
        ("SET", KEYS.identity("hmac:e1"), "C", "PX", 1000),
        ("SET", KEYS.profile_of("hmac:c"), "C", "NX", "PX", 1000),
    ]
    for by_shard in (found.hold, found.settled, found.released):
        for shard, shard_entries in by_shard.items():
            for entry in shard_entries:
                assert key_slot(KEYS.profile(str(entry[1])).encode()) == key_slot(
                    shard.profile_count.encode()
                ), entry


def test_a_save_that_links_nothing_reaches_nothing_but_its_indexes() -> None:
    save = Save(Profile(id="C", customer_id="C"), 0, identities=["hmac:e"])
    found = reach(KEYS, save, partition, retention_ms=0)
    assert not found.hold and not found.settled and not found.released
    assert found.beside == [("SET", KEYS.identity("hmac:e"), "C")]
