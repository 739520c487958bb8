"""What cdpulse stored under one Redis key prefix, read straight from Redis.

The fault tests and the rebuild test compare whole stores: every profile, every alias
and the watermarks, rendered exactly as the HTTP API renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdpulse.connections import BlockingRedis
from cdpulse.profile.model import Profile, decode
from cdpulse.profile.rules import Rules
from cdpulse.profile.view import render
from cdpulse.store.keys import keys_for
from tests.oracle import Truth, differences


@dataclass(frozen=True)
class StoredState:
    """Every profile, alias, admin merge marker and per-partition watermark under one
    prefix."""

    profiles: dict[str, Profile]
    aliases: dict[str, str]
    watermarks: dict[str, int]
    merged: dict[str, str] = field(default_factory=dict)  # merged customer -> survivor

    @property
    def as_of(self) -> int:
        """The newest event time seen on any partition: what the API renders at."""
        return max(self.watermarks.values(), default=0)

    def documents(self, rules: Rules | None = None) -> dict[str, dict[str, Any]]:
        """Every profile as ``GET /v1/profiles/{id}`` serves it."""
        rules = rules or Rules()
        return {i: render(p, self.as_of, rules) for i, p in self.profiles.items()}


def read_state(client: BlockingRedis, prefix: str) -> StoredState:
    """Read everything under ``prefix`` (which must hold no glob characters), from one
    Redis or a Redis Cluster (its key layout, every master scanned)."""
    keys = keys_for(client, prefix)
    found = {
        kind: sorted(client.scan_iter(match=keys.ids_pattern(kind), count=1000))
        for kind in ("profile", "alias", "merged")
    }
    pipe = client.pipeline(transaction=False)
    for key in found["profile"]:
        pipe.hget(key, "b")
    for key in (*found["alias"], *found["merged"]):
        pipe.get(key)  # not MGET: on a cluster each key is on its own slot
    values = pipe.execute()
    blobs = values[: len(found["profile"])]
    targets = values[len(found["profile"]) : len(found["profile"]) + len(found["alias"])]
    survivors = values[len(found["profile"]) + len(found["alias"]) :]
    marks = client.hgetall(keys.watermark)

    def ids(kind: str) -> list[str]:
        return [keys.id_in(k.decode(), kind) for k in found[kind]]

    return StoredState(
        profiles={i: decode(b) for i, b in zip(ids("profile"), blobs, strict=True)},
        aliases={i: t.decode() for i, t in zip(ids("alias"), targets, strict=True)},
        watermarks={k.decode(): int(v) for k, v in marks.items()},
        merged={i: t.decode() for i, t in zip(ids("merged"), survivors, strict=True)},
    )


def oracle_problems(state: StoredState, truth: Truth) -> list[str]:
    """Every way the stored state differs from the oracle's truth, one line each."""
    problems: list[str] = []
    stored, wanted = set(state.profiles), set(truth.profiles)
    if stored != wanted:
        problems.append(
            f"profiles: {len(stored - wanted)} unexpected (e.g. {sorted(stored - wanted)[:3]}), "
            f"{len(wanted - stored)} missing (e.g. {sorted(wanted - stored)[:3]})"
        )
    if state.aliases != truth.aliases:
        wrong = sorted(
            a
            for a in state.aliases.keys() | truth.aliases.keys()
            if state.aliases.get(a) != truth.aliases.get(a)
        )
        problems.append(f"aliases: {len(wrong)} differ, e.g. {wrong[:3]}")
    if state.as_of != truth.as_of:
        problems.append(f"watermark: got {state.as_of}, want {truth.as_of}")
    documents = state.documents()
    for profile_id in sorted(stored & wanted):
        problems += differences(documents[profile_id], truth.profiles[profile_id])
    return problems


def summary(problems: list[str], shown: int = 20) -> str:
    lines = problems[:shown] + (
        [f"... and {len(problems) - shown} more"] if len(problems) > shown else []
    )
    return "\n  ".join(lines)


def assert_exact(client: BlockingRedis, prefix: str, truth: Truth) -> None:
    """Fail unless every profile, alias and watermark under ``prefix`` equals the oracle's."""
    problems = oracle_problems(read_state(client, prefix), truth)
    assert not problems, "the store differs from the oracle:\n  " + summary(problems)
