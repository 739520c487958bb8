"""What a profile costs in Redis, measured two ways.

* ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of a sample of profile keys: the key, the
  hash and its MessagePack value, as Redis accounts for them;
* the growth of ``used_memory`` over a phase divided by the profiles it created: also
  aliases, watermarks and the keyspace's own overhead, so the honest total.
"""

from __future__ import annotations

from typing import Any

import redis as sync_redis

from cdpulse.bench.stats import percentile
from cdpulse.connections import BlockingRedis
from cdpulse.store.keys import Keys, keys_for


def used_memory(client: BlockingRedis) -> int:
    """Bytes Redis uses: on a Redis Cluster, summed over its masters."""
    if isinstance(client, sync_redis.RedisCluster):
        per_node = client.info("memory", target_nodes=sync_redis.RedisCluster.PRIMARIES)
        return sum(int(info["used_memory"]) for info in per_node.values())
    return int(client.info("memory")["used_memory"])


def cpu_seconds(client: BlockingRedis) -> float:
    """CPU seconds Redis used (user + system): on a Redis Cluster, every node's."""
    if isinstance(client, sync_redis.RedisCluster):
        per_node = client.info("cpu", target_nodes=sync_redis.RedisCluster.ALL_NODES)
        infos = list(per_node.values())
    else:
        infos = [client.info("cpu")]
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)


def persistence(client: BlockingRedis) -> dict[str, int]:
    """Redis' append-only file: its size and the rewrites so far (summed over a
    cluster's masters). A rewrite forks Redis and writes the whole dataset out: one
    during a phase takes CPU and disk from the roles, and runs of the same code on a
    Redis holding a long history of earlier runs measured up to a quarter slower."""
    if isinstance(client, sync_redis.RedisCluster):
        per_node = client.info("persistence", target_nodes=sync_redis.RedisCluster.PRIMARIES)
        infos = list(per_node.values())
    else:
        infos = [client.info("persistence")]
    return {
        "aof_bytes": sum(int(i.get("aof_current_size", 0)) for i in infos),
        "aof_rewrites": sum(int(i.get("aof_rewrites", 0)) for i in infos),
    }


def profile_keys(client: BlockingRedis, prefix: str, limit: int) -> list[bytes]:
    """Up to ``limit`` profile keys under ``prefix``."""
    keys: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:{{*}}:profile", count=1000):
        keys.append(key)
        if len(keys) >= limit:
            break
    return keys


def measure(
    client: BlockingRedis, prefix: str, used_before: int, sample: int = 1000
) -> dict[str, Any]:
    """Bytes per profile under ``prefix``; ``used_before`` is ``used_memory`` before the phase."""
    keys = keys_for(client, prefix)
    profiles = sum(int(client.get(shard.profile_count) or 0) for shard in keys.shards())
    aliases = sum(1 for _ in client.scan_iter(match=f"{prefix}:{{*}}:alias", count=1000))
    growth = used_memory(client) - used_before
    sampled = profile_keys(client, prefix, sample)
    pipe = client.pipeline(transaction=False)
    for key in sampled:
        pipe.memory_usage(key, samples=0)
        pipe.hstrlen(key, "b")
    answers = pipe.execute()
    usage = [float(u) for u in answers[0::2] if u is not None]
    blobs = [float(b) for b in answers[1::2]]
    out: dict[str, Any] = {
        "profiles": profiles,
        "aliases": aliases,
        "used_memory_growth": growth,
        "bytes_per_profile": growth / profiles if profiles else None,
        "sampled_keys": len(usage),
    }
    if usage:
        out["memory_usage"] = {
            "mean": sum(usage) / len(usage),
            "p50": percentile(usage, 0.5),
            "p99": percentile(usage, 0.99),
            "max": max(usage),
        }
        out["msgpack_bytes"] = {
            "mean": sum(blobs) / len(blobs),
            "p50": percentile(blobs, 0.5),
            "p99": percentile(blobs, 0.99),
            "max": max(blobs),
        }
    return out


def delete_prefix(client: BlockingRedis, prefix: str) -> int:
    """Remove every key under ``prefix``; returns how many."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=Keys(prefix).pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            removed += int(client.unlink(*batch))
            batch.clear()
    if batch:
        removed += int(client.unlink(*batch))
    return removed
