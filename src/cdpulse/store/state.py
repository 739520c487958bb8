"""The pipeline's state store in Redis: one pipelined read, one pipelined write per batch.

The read asks, in one round trip, for every profile and link the batch touches
(``read.lua``, in chunks), the erasure ledger's entries of its ids, the watermarks, the
exposures of its buyers and what is due in this worker's shards, with those profiles
(``due.lua``). The write is ``write.lua`` per chunk of profiles (the compare-and-set of
each and everything that must change with it, see the script) and the watermark script,
again in one round trip.

Chunks travel as one MessagePack argument each: redis-py packs a command's arguments one
by one in Python (~1 µs each), which for a save with its links and operations cost more
than the save. Chunks are small enough (``CHUNK`` profiles) that a script never holds
Redis long enough to delay the API's reads.

Scripts are called by hash with ``EVALSHA`` and loaded once: redis-py's ``Script`` objects
ask ``SCRIPT EXISTS`` before every pipeline that holds one, a round trip per batch. A
server that lost its scripts (a restart) answers NOSCRIPT: they are loaded again and the
pipeline is sent again, which is safe because a refused script call did nothing and the
rest of a write (watermarks) only ever raises.

The scripts name keys from the prefix and the ids, so they are for one Redis node.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from cdpulse.ops import metrics
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Stored, View, Wanted
from cdpulse.profile.model import decode, encode
from cdpulse.store.cache import ProfileCache
from cdpulse.store.keys import Keys
from cdpulse.store.redis import script

_STATUS = {-1: SaveStatus.CONFLICT, -2: SaveStatus.ALIASED, -3: SaveStatus.LINK_TAKEN}
CLAIM_SECONDS = 2 * 86_400  # how long a trigger claim is kept: far beyond any redelivery
CHUNK = 64  # profiles per script call: a few ms of Redis at most
_PACK = msgspec.msgpack.Encoder()


def _pack(value: Any) -> bytes:
    return _PACK.encode(value)


def _rows(view: View, ids: list[str], rows: list[Any]) -> None:
    """Add (alias, version, blob) rows, one per id, to ``view``."""
    for n, profile_id in enumerate(ids):
        alias, version, blob = rows[3 * n : 3 * n + 3]
        if alias is not None:
            view.aliases[profile_id] = _text(alias)
        view.profiles[profile_id] = Stored(
            int(version or 0), decode(blob) if blob else None, blob or None
        )


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
        cache: ProfileCache | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self._lent: set[str] = set()  # ids the current batch took from the cache
        self.keys = Keys(prefix)
        # The erasure ledger read: the prefix's own, or a live one a rebuild screens with.
        self.ledger = Keys(ledger_prefix or prefix).erasure_ledger
        self.retention_ms = retention_ms
        self.pseudonym = pseudonym
        self.shard_of = shard_of
        self._read = _Script("read.lua")
        self._write = _Script("write.lua")
        self._watermark = _Script("watermark.lua")
        self._due = _Script("due.lua")
        self.round_trips = 0

    # --- read -----------------------------------------------------------------------------

    async def read(self, wanted: Wanted) -> View:
        keys = self.keys
        view = View()
        ids = sorted(wanted.ids)
        if self.cache is not None:
            missing = []
            for profile_id in ids:
                cached = self.cache.lend(profile_id)
                if cached is None:
                    missing.append(profile_id)
                else:
                    view.profiles[profile_id] = cached
                    self._lent.add(profile_id)
            ids = missing
        erased = sorted(wanted.erased)
        buyers = sorted(wanted.buyers)
        if not (ids or erased or buyers or wanted.due_shards or wanted.watermarks):
            view.round_trips = 0  # everything came from the cache
            return view
        pseudonyms = [self.pseudonym(i) for i in erased]
        chunks = [ids[at : at + CHUNK] for at in range(0, len(ids), CHUNK)]

        def build(pipe: Any) -> None:
            if erased:
                pipe.hmget(self.ledger, pseudonyms)
            for chunk in chunks:
                self._read.call(pipe, [], [_pack([keys.prefix, chunk])])
            if wanted.watermarks:
                pipe.hgetall(keys.watermark)
            if buyers:
                for name in wanted.experiments:
                    pipe.hmget(keys.experiment(name, "exposed"), buyers)
            for shard in wanted.due_shards:
                schedules = [keys.due(shard, "churn"), keys.due(shard, "trigger")]
                args: list[Any] = [wanted.due_until, wanted.due_limit, keys.prefix]
                self._due.call(pipe, schedules, args)

        replies = iter(await self._execute(build, "read"))
        if erased:
            found = next(replies)
            view.erased = {i for i, at in zip(erased, found, strict=True) if at is not None}
        for chunk in chunks:
            _rows(view, chunk, next(replies))
        if wanted.watermarks:
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
                due_id = _text(rows[row])
                view.due.add(due_id)
                if due_id in view.profiles:
                    continue  # read above already (or lent from the cache)
                cached = self.cache.lend(due_id) if self.cache is not None else None
                if cached is not None and cached.version == int(rows[row + 2] or 0):
                    view.profiles[due_id] = cached
                    self._lent.add(due_id)
                    continue
                _rows(view, [due_id], rows[row + 1 : row + 4])
        return view

    # --- write ----------------------------------------------------------------------------

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        if not changes.saves and not changes.watermarks:
            if self.cache is not None:
                for profile_id in self._lent:
                    self.cache.drop(profile_id)
            self._lent.clear()
            return {}
        saves = [self._save_row(save) for save in changes.saves]
        # The profiles travel as arguments of their own: Redis' MessagePack reader
        # predates the binary type.
        blobs = [encode(save.profile) for save in changes.saves]
        chunks = [
            [
                _pack([self.keys.prefix, self.retention_ms, saves[at : at + CHUNK]]),
                *blobs[at : at + CHUNK],
            ]
            for at in range(0, len(saves), CHUNK)
        ]
        marks = [x for name, at in changes.watermarks.items() for x in (name, at)]

        def build(pipe: Any) -> None:
            for chunk in chunks:
                self._write.call(pipe, [], chunk)
            if marks:
                self._watermark.call(pipe, [self.keys.watermark], marks)

        replies = await self._execute(build, "write")
        codes = [int(code) for reply in replies[: len(chunks)] for code in reply]
        statuses = {
            save.profile.id: _STATUS.get(code, SaveStatus.SAVED)
            for save, code in zip(changes.saves, codes, strict=True)
        }
        if self.cache is not None:
            self._remember(changes, codes, blobs)
        return statuses

    def _remember(self, changes: Changes, codes: list[int], blobs: list[bytes]) -> None:
        """Cache what was written; drop what was refused, retired or lent and not written
        (a stage may have changed it in place)."""
        assert self.cache is not None
        for save, code, blob in zip(changes.saves, codes, blobs, strict=True):
            profile_id = save.profile.id
            self._lent.discard(profile_id)
            if code > 0:
                self.cache.put(profile_id, Stored(code, save.profile, blob))
            else:
                self.cache.drop(profile_id)
            for visitor in save.retire:
                self.cache.drop(visitor)
        for profile_id in self._lent:
            self.cache.drop(profile_id)
        self._lent.clear()

    def discard(self) -> None:
        """A batch failed: what it took from the cache may have been changed in place."""
        if self.cache is not None:
            self.cache.clear()
        self._lent.clear()

    def _save_row(self, save: Save) -> list[Any]:
        """One save as ``write.lua`` reads it: id, version, links, operations."""
        k = self.keys
        profile_id = save.profile.id
        ops: list[list[Any]] = [
            ["del", k.profile(visitor), version] for visitor, version in save.retire.items()
        ]
        shard = self.shard_of(profile_id)
        for kind, due in (("churn", save.churn_due), ("trigger", save.trigger_due)):
            if kind not in save.schedules:
                continue
            if due is None:
                ops.append(["zrem", k.due(shard, kind), profile_id])
            else:
                ops.append(["zadd", k.due(shard, kind), str(due), profile_id])
        for segment in save.entered:
            ops.append(["zadd", k.members(segment), "0", profile_id])
        for segment in save.left:
            ops.append(["zrem", k.members(segment), profile_id])
        if save.summary is not None:
            ops.append(["hset", k.clv_summaries, profile_id, save.summary.decode()])
        for pseudonym in save.identities:
            ops.append(["set", k.identity(pseudonym), profile_id])
        if save.pseudonym is not None:
            ops.append(["setnx", k.profile_of(save.pseudonym), profile_id])
        for experiment, variant in save.conversions:
            ops.append(
                [
                    "convert",
                    k.experiment(experiment, "converted"),
                    k.experiment(experiment, "counts"),
                    profile_id,
                    variant,
                ]
            )
        for claim, rule, counter in save.tallies:
            ops.append(
                ["claim", k.fired(profile_id, claim), k.uplift(rule), CLAIM_SECONDS, counter]
            )
        return [profile_id, save.version, save.links, ops]

    # --- both -----------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        for each in (self._read, self._write, self._watermark, self._due):
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
