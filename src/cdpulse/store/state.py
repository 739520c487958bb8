"""The pipeline's state store in Redis: one pipelined read, one pipelined write per batch.

The read asks, in one round trip, for every profile and link the batch touches, the
erasure ledger's entries of its ids, the watermarks, the exposures of its buyers and what
is due in this worker's shards, with those profiles (``due.lua``). The write is one
``state.lua`` call per profile (the compare-and-set and everything that must change with
it, see the script) and the watermark script, again in one round trip.

Scripts are called by hash with ``EVALSHA`` and loaded once: redis-py's ``Script`` objects
ask ``SCRIPT EXISTS`` before every pipeline that holds one, a round trip per batch. A
server that lost its scripts (a restart) answers NOSCRIPT: they are loaded again and the
pipeline is sent again, which is safe because a refused script call did nothing and the
rest of a write (watermarks) only ever raises.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from cdpulse.ops import metrics
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Stored, View, Wanted
from cdpulse.profile.model import decode, encode
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script

_STATUS = {-1: SaveStatus.CONFLICT, -2: SaveStatus.ALIASED, -3: SaveStatus.LINK_TAKEN}
CLAIM_SECONDS = 2 * 86_400  # how long a trigger claim is kept: far beyond any redelivery


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class _Script:
    """A Lua script called by its SHA-1, loaded when the server does not know it."""

    def __init__(self, name: str) -> None:
        self.source = script(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self, client: aioredis.Redis) -> None:
        await client.script_load(self.source)


class RedisState:
    """Profiles, links and what is kept beside them, under one key prefix."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        retention_ms: int = 0,
        pseudonym: Callable[[str], str],
        shard_of: Callable[[str], int],
        ledger_prefix: str | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        # The erasure ledger read: the prefix's own, or a live one a rebuild screens with.
        self.ledger = Keys(ledger_prefix or prefix).erasure_ledger
        self.retention_ms = retention_ms
        self.pseudonym = pseudonym
        self.shard_of = shard_of
        self._save = _Script("state.lua")
        self._watermark = _Script("watermark.lua")
        self._due = _Script("due.lua")
        self.round_trips = 0

    # --- read -----------------------------------------------------------------------------

    async def read(self, wanted: Wanted) -> View:
        keys = self.keys
        ids = sorted(wanted.ids)
        erased = sorted(wanted.erased)
        buyers = sorted(wanted.buyers)
        pseudonyms = [self.pseudonym(i) for i in erased]

        def build(pipe: Any) -> None:
            if erased:
                pipe.hmget(self.ledger, pseudonyms)
            for profile_id in ids:
                pipe.get(keys.alias(profile_id))
                pipe.hmget(keys.profile(profile_id), "v", "b")
            pipe.hgetall(keys.watermark)
            if buyers:
                for name in wanted.experiments:
                    pipe.hmget(keys.experiment(name, "exposed"), buyers)
            for shard in wanted.due_shards:
                schedules = [keys.due(shard, "churn"), keys.due(shard, "trigger")]
                args: list[Any] = [wanted.due_until, wanted.due_limit, keys.prefix]
                self._due.call(pipe, schedules, args)

        replies = iter(await self._execute(build, "read"))

        view = View()
        if erased:
            found = next(replies)
            view.erased = {i for i, at in zip(erased, found, strict=True) if at is not None}
        for profile_id in ids:
            alias = next(replies)
            version, blob = next(replies)
            if alias is not None:
                view.aliases[profile_id] = _text(alias)
            view.profiles[profile_id] = Stored(
                int(version or 0), decode(blob) if blob else None, blob or None
            )
        view.watermarks = {_text(k): int(v) for k, v in next(replies).items()}
        if buyers:
            for name in wanted.experiments:
                seen: dict[str, tuple[str, int]] = {}
                for customer, value in zip(buyers, next(replies), strict=True):
                    if value is not None:
                        variant, at = _text(value).split("|")
                        seen[customer] = (variant, int(at))
                view.exposures[name] = seen
        for _ in wanted.due_shards:
            rows = next(replies)
            for row in range(0, len(rows), 4):
                raw_id, alias, version, blob = rows[row : row + 4]
                due_id = _text(raw_id)
                view.due.add(due_id)
                if alias is not None:
                    view.aliases[due_id] = _text(alias)
                view.profiles[due_id] = Stored(
                    int(version or 0), decode(blob) if blob else None, blob or None
                )
        return view

    # --- write ----------------------------------------------------------------------------

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        if not changes.saves and not changes.watermarks:
            return {}
        calls = [self._save_call(save) for save in changes.saves]
        marks = [x for name, at in changes.watermarks.items() for x in (name, at)]

        def build(pipe: Any) -> None:
            for keys, args in calls:
                self._save.call(pipe, keys, args)
            if marks:
                self._watermark.call(pipe, [self.keys.watermark], marks)

        replies = await self._execute(build, "write")
        return {
            save.profile.id: _STATUS.get(int(code), SaveStatus.SAVED)
            for save, code in zip(changes.saves, replies, strict=False)
        }

    def _save_call(self, save: Save) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one ``state.lua`` call."""
        k = self.keys
        profile_id = save.profile.id
        retention = self.retention_ms
        keys = [k.profile(profile_id), k.alias(profile_id), k.profile_count]
        keys += [k.alias(v) for v in save.links]
        args: list[Any] = [save.version, encode(save.profile), retention, profile_id]
        args.append(len(save.links))

        def key(name: str) -> int:
            keys.append(name)
            return len(keys)  # Lua counts from 1

        def op(name: str, first: int, second: int | str, a: Any, b: Any) -> None:
            args.extend((name, first, second, a, b))

        for visitor, version in save.retire.items():
            op("del", key(k.profile(visitor)), 0, "", version)
        shard = self.shard_of(profile_id)
        for kind, due in (("churn", save.churn_due), ("trigger", save.trigger_due)):
            if kind not in save.schedules:
                continue
            if due is None:
                op("zrem", key(k.due(shard, kind)), 0, "", profile_id)
            else:
                op("zadd", key(k.due(shard, kind)), 0, due, profile_id)
        if save.pseudonym is not None:
            op("setnx", key(k.profile_of(save.pseudonym)), 0, profile_id, retention)
        for segment in save.entered:
            op("zadd", key(k.members(segment)), 0, 0, profile_id)
        for segment in save.left:
            op("zrem", key(k.members(segment)), 0, "", profile_id)
        if save.summary is not None:
            op("hset", key(k.clv_summaries), 0, profile_id, save.summary)
        for pseudonym in save.identities:
            op("set", key(k.identity(pseudonym)), 0, profile_id, retention)
        for experiment, variant in save.conversions:
            converted = key(k.experiment(experiment, "converted"))
            op("convert", converted, key(k.experiment(experiment, "counts")), profile_id, variant)
        for claim, rule, counter in save.tallies:
            claimed = key(k.fired(profile_id, claim))
            op("claim", claimed, key(k.uplift(rule)), CLAIM_SECONDS, counter)
        return keys, args

    # --- both -----------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        for each in (self._save, self._watermark, self._due):
            await each.load(self.client)

    async def _execute(self, build: Callable[[Any], None], op: str) -> list[Any]:
        """One round trip of the commands ``build`` adds to a pipeline."""
        started = time.perf_counter()
        pipe = self.client.pipeline(transaction=False)
        build(pipe)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.load_scripts()  # the server restarted, or never had them
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            replies = await pipe.execute(raise_on_error=False)
        self.round_trips += 1
        metrics.REDIS_SECONDS.labels(op).observe(time.perf_counter() - started)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
