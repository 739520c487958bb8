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
server that lost its scripts (a restart; on a cluster, a promoted replica) answers
NOSCRIPT: they are loaded again and the refused calls are sent again, which is safe
because a refused script call did nothing.

On a Redis Cluster (``store/keys.py``: ``ClusterKeys``) every script call holds the ids
of one shard, whose keys share its slot: the read and the due polls are one call per
shard, in the same one round trip, and the write takes up to three round trips: the
links and holds in other slots, the saves, and what settles them (``store/links.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from cdpulse.connections import AsyncRedis
from cdpulse.ops import metrics
from cdpulse.pipeline.state import Changes, Save, SaveStatus, Stored, View, Wanted
from cdpulse.profile.model import decode, encode
from cdpulse.store import links
from cdpulse.store.cache import ProfileCache
from cdpulse.store.keys import SHARDS, Keys, Shard, keys_for
from cdpulse.store.kpis import FIELDS_CAP, kpi_key
from cdpulse.store.redis import script
from cdpulse.store.replicas import Replicas

log = logging.getLogger(__name__)

_STATUS = {-1: SaveStatus.CONFLICT, -2: SaveStatus.ALIASED, -3: SaveStatus.LINK_TAKEN}
CLAIM_SECONDS = 2 * 86_400  # how long a trigger claim is kept: far beyond any redelivery
CHUNK = 64  # profiles per script call: a few ms of Redis at most
RESENDS = 3  # sends of a command a server refused (NOSCRIPT, MOVED) before it fails
_PACK = msgspec.msgpack.Encoder()


def _pack(value: Any) -> bytes:
    return _PACK.encode(value)


def _rows(
    view: View, ids: list[str], rows: list[Any], known: dict[str, Stored] | None = None
) -> None:
    """Add (alias, version, blob) rows, one per id, to ``view``; a ``known`` (cached)
    profile whose version is the stored one is lent as it is, not decoded again."""
    for n, profile_id in enumerate(ids):
        alias, version, blob = rows[3 * n : 3 * n + 3]
        if alias is not None:
            view.aliases[profile_id] = _text(alias)
        cached = known.get(profile_id) if known else None
        if cached is not None and alias is None and int(version or 0) == cached.version:
            view.profiles[profile_id] = view.lent[profile_id] = cached
            continue
        view.profiles[profile_id] = Stored(
            int(version or 0), decode(blob) if blob else None, blob or None
        )


# What a save touches of its id's keys in ``write.lua`` on a Redis Cluster.
_SAVE_KINDS = ("profile", "alias", "merged", "hold", "claimed", "identities")


def _touched(keys: Keys, shard: Shard, rows: list[list[Any]]) -> list[str]:
    """Every key a ``write.lua`` call of ``rows`` touches: declared, so that a Redis
    Cluster moving their slot answers before the script runs (ASK: retried later)
    instead of failing it halfway, and never runs it where half of them are."""
    touched = [shard.profile_count]
    for row in rows:
        base = keys.of(row[0])
        touched += [base + kind for kind in _SAVE_KINDS]
        for op in row[3]:
            if isinstance(op[1], str):
                touched.append(op[1])
            if op[0] in ("convert", "claim"):
                touched.append(op[2])
    return list(dict.fromkeys(touched))


def _blob(save: Save) -> bytes:
    """The bytes a save writes: encoded when it was staged, or now."""
    return save.blob if save.blob is not None else encode(save.profile)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class _Script:
    """A Lua script called by its SHA-1, loaded when the server does not know it."""

    def __init__(self, name: str) -> None:
        self.source = script(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self, client: AsyncRedis) -> None:
        await client.script_load(self.source)  # a cluster client loads it on every master


class SlotMoving(ClusterError):
    """A script found keys of its slot on another node: the slot is being migrated
    between masters (``redis-cli --cluster reshard``). The round trip is retried; the
    migration of one slot takes moments."""


# What Redis Cluster answers a script that reaches a key its node no longer serves.
_NOT_LOCAL = "Script attempted to access a non local key"


class _Commands:
    """The commands a round trip sends, recorded so that those a server answered
    NOSCRIPT can be sent again alone: on a Redis Cluster a promoted replica may lack
    the scripts while the other masters ran theirs."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.sent.append((name, args))

        return record

    def replay(self, pipe: Any, which: Iterable[int]) -> None:
        for n in which:
            name, args = self.sent[n]
            getattr(pipe, name)(*args)


class RedisState:
    """Profiles, links and what is kept beside them, under one key prefix."""

    def __init__(
        self,
        client: AsyncRedis,
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
        # visitor -> customer, linked by a staged save: a later batch resolves the visitor
        # as that save's write will (a save started from it is refused if it is not).
        self._staged_links: dict[str, str] = {}
        # id -> (shard, earliest due time, save) of staged saves that schedule the
        # profile: a later batch polls them as it would once the write landed.
        self._staged_due: dict[str, tuple[int, int, Save]] = {}
        self.keys = keys_for(client, prefix)
        # The erasure ledger read: the prefix's own, or a live one a rebuild screens with.
        self.ledger = Keys(ledger_prefix or prefix).erasure_ledger
        self.retention_ms = retention_ms
        self.pseudonym = pseudonym
        self.shard_of = shard_of
        self._read = _Script("read.lua")
        self._write = _Script("write.lua")
        self._watermark = _Script("watermark.lua")
        self._due = _Script("due.lua")
        self._hold = _Script("hold.lua")
        self._settle = _Script("settle.lua")
        self._replicas = Replicas(client) if isinstance(client, aioredis.RedisCluster) else None
        self.round_trips = 0

    # --- read -----------------------------------------------------------------------------

    async def read(self, wanted: Wanted) -> View:
        keys = self.keys
        view = View()
        ids = sorted(wanted.ids)
        # Cached profiles are checked, not read: the read asks for their stored version
        # and sends the bytes only when someone else wrote them since (the learner's RFM
        # sweep, an erasure, another worker in a rebalance). A batch never starts from a
        # stale cached profile, so such a writer no longer costs a refused save, a
        # second read and a second write. A staged profile (its write is in flight) is
        # lent as it is: that write decides, and a save built on it is refused with it.
        known: dict[str, Stored] = {}
        if self.cache is not None:
            wanted_ids = []
            staged_links = {} if wanted.written_only else self._staged_links
            for profile_id in ids:
                customer = staged_links.get(profile_id)
                if customer is not None:
                    view.aliases[profile_id] = customer
                    view.profiles[profile_id] = Stored(0, None)
                    continue
                if wanted.written_only and self.cache.is_staged(profile_id):
                    wanted_ids.append(profile_id)  # read from Redis; the entry stays
                    continue
                cached = self.cache.lend(profile_id)
                if cached is not None and cached.staged:
                    view.profiles[profile_id] = view.lent[profile_id] = cached
                    continue
                if cached is not None:
                    known[profile_id] = cached
                wanted_ids.append(profile_id)
            ids = wanted_ids
        erased = sorted(wanted.erased)
        buyers = sorted(wanted.buyers)
        if not (ids or erased or buyers or wanted.due_shards or wanted.watermarks):
            view.round_trips = 0  # everything came from the cache
            return view
        pseudonyms = [self.pseudonym(i) for i in erased]
        chunks = [
            (shard, group[at : at + CHUNK])
            for shard, group in self._by_shard(ids)
            for at in range(0, len(group), CHUNK)
        ]
        buyer_groups = self._by_shard(buyers) if buyers else []
        polls = self._due_polls(wanted)
        # What the saves in flight made due, as of before the read is sent: one of their
        # writes may run in Redis after this read (which then finds the schedule as it
        # was), yet end here before its reply, forgetting what it staged.
        staged_due = dict(self._staged_due) if polls else {}

        def build(pipe: Any) -> None:
            if erased:
                pipe.hmget(self.ledger, pseudonyms)
            for shard, chunk in chunks:
                versions = [known[i].version if i in known else 0 for i in chunk]
                if shard.head is None:
                    self._read.call(pipe, [], [_pack([keys.prefix, chunk, versions])])
                else:
                    request = [keys.prefix, chunk, versions, shard.head]
                    touched = [keys.of(i) + kind for i in chunk for kind in ("alias", "profile")]
                    self._read.call(pipe, touched, [_pack(request)])
            if wanted.watermarks:
                pipe.hgetall(keys.watermark)
            for name in wanted.experiments:
                for shard, group in buyer_groups:
                    pipe.hmget(shard.experiment(name, "exposed"), group)
            for schedules, _, args in polls:
                self._due.call(pipe, schedules, args)

        replies = iter(await self._execute(build, "read"))
        if erased:
            found = next(replies)
            view.erased = {i for i, at in zip(erased, found, strict=True) if at is not None}
        for _, chunk in chunks:
            _rows(view, chunk, next(replies), known)
        if wanted.watermarks:
            view.watermarks = {_text(k): int(v) for k, v in next(replies).items()}
        if buyers:
            for name in wanted.experiments:
                seen: dict[str, tuple[str, int]] = {}
                for _, group in buyer_groups:
                    for customer, value in zip(group, next(replies), strict=True):
                        if value is not None:
                            variant, at = _text(value).split("|")
                            seen[customer] = (variant, int(at))
                view.exposures[name] = seen
        for _, churn, _ in polls:
            rows, cuts = next(replies)
            for cut in range(0, len(cuts), 3):
                last = (int(float(cuts[cut + 1])), _text(cuts[cut + 2]))
                view.cut_due(last, churn[int(cuts[cut]) - 1])  # 1-based, as Lua counts
            for row in range(0, len(rows), 4):
                due_id = _text(rows[row])
                view.due.add(due_id)
                if due_id in view.profiles or due_id in self._staged_links:
                    continue  # read above already (or lent from the cache), or merged
                cached = self.cache.lend(due_id) if self.cache is not None else None
                if cached is not None and (
                    cached.staged or cached.version >= int(rows[row + 2] or 0)
                ):
                    # Staged: the batch being written rescheduled it (its write decides);
                    # newer than the row: that write landed after this read.
                    view.profiles[due_id] = view.lent[due_id] = cached
                    continue
                # Not lent (someone else wrote it since): what was read stands.
                _rows(view, [due_id], rows[row + 1 : row + 4])
        if staged_due:
            self._poll_staged(view, wanted, staged_due)
        return view

    def _by_shard(self, ids: list[str]) -> list[tuple[Shard, list[str]]]:
        """``ids`` by the shard whose slot their keys are on (one Redis: one shard)."""
        if not self.keys.cluster:
            return [(self.keys.shards()[0], ids)]
        groups: dict[Shard, list[str]] = defaultdict(list)
        for i in ids:
            groups[self.keys.shard(i)].append(i)
        return list(groups.items())

    def _due_polls(self, wanted: Wanted) -> list[tuple[list[str], list[bool], list[Any]]]:
        """The ``due.lua`` calls polling ``wanted``'s shards: one per input partition on
        one Redis; on a Redis Cluster one per shard, each over every partition, and each
        schedule giving its share of ``due_limit``. Each call's schedules, whether each is
        a churn schedule (only those cut what a batch decides), and its arguments."""
        if not wanted.due_shards:
            return []
        kinds = ("churn", "trigger")
        prefix = self.keys.prefix
        if not self.keys.cluster:
            shard = self.keys.shards()[0]
            return [
                (
                    [shard.due(p, kind) for kind in kinds],
                    [kind == "churn" for kind in kinds],
                    [wanted.due_until, wanted.due_limit, prefix],
                )
                for p in wanted.due_shards
            ]
        share = math.ceil(wanted.due_limit / SHARDS)
        return [
            (
                [shard.due(p, kind) for p in wanted.due_shards for kind in kinds],
                [kind == "churn" for _ in wanted.due_shards for kind in kinds],
                [wanted.due_until, share, prefix, shard.head],
            )
            for shard in self.keys.shards()
        ]

    def _poll_staged(
        self, view: View, wanted: Wanted, staged_due: dict[str, tuple[int, int, Save]]
    ) -> None:
        """What the saves being written made due, as the schedules will say once written."""
        assert self.cache is not None
        shards = set(wanted.due_shards)
        for profile_id, (shard, due, _) in staged_due.items():
            if shard not in shards or due > wanted.due_until or profile_id in view.due:
                continue
            if profile_id not in view.profiles:
                cached = self.cache.lend(profile_id)
                if cached is None:
                    continue  # evicted: the schedule has it once the write landed
                view.profiles[profile_id] = view.lent[profile_id] = cached
            view.due.add(profile_id)

    # --- write ----------------------------------------------------------------------------

    def stage(self, changes: Changes) -> None:
        """Encode the saves and, with a cache, hand them to later batches' reads now."""
        for save in changes.saves:
            if save.blob is None:
                save.blob = encode(save.profile)
            if self.cache is not None:
                save.staged = Stored(save.version + 1, save.profile, save.blob, staged=True)
                self.cache.put(save.profile.id, save.staged)
                if save.profile.customer_id is not None:
                    self._staged_links.pop(save.profile.id, None)  # its write unlinks it
                for visitor in (*save.links, *save.retire):
                    self._staged_links[visitor] = save.profile.id
                for gone in save.customers.values():
                    for linked in gone.linked:  # moved to the survivor by the write
                        self._staged_links[linked] = save.profile.id
                dues = [
                    due
                    for kind, due in (("churn", save.churn_due), ("trigger", save.trigger_due))
                    if due is not None and kind in save.schedules
                ]
                if dues:
                    shard = self.shard_of(save.profile.id)
                    self._staged_due[save.profile.id] = (shard, min(dues), save)
                else:
                    self._staged_due.pop(save.profile.id, None)

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        statuses: dict[str, SaveStatus] = {}
        # A save that started from a profile staged by an earlier batch whose write did
        # not save it is refused here: its version may have been reached by another
        # writer meanwhile, so the compare-and-set could pass on a profile never stored.
        sent: list[Save] = []
        for save in changes.saves:
            base = changes.lent.get(save.profile.id)
            if save.withheld or (base is not None and base.staged):
                statuses[save.profile.id] = SaveStatus.CONFLICT
            else:
                sent.append(save)
        if not sent and not changes.watermarks:
            self._remember(changes, {})
            return statuses
        marks = [x for name, at in changes.watermarks.items() for x in (name, at)]
        if self.keys.cluster:
            codes = await self._write_shards(sent, marks)
        else:
            codes = await self._write_one(sent, marks)
        written: dict[str, int] = {}
        for save, code in zip(sent, codes, strict=True):
            statuses[save.profile.id] = _STATUS.get(code, SaveStatus.SAVED)
            written[save.profile.id] = code
        self._remember(changes, written)
        return statuses

    async def _write_one(self, sent: list[Save], marks: list[Any]) -> list[int]:
        """One Redis: every save and the watermarks in one round trip."""
        saves = [self._save_row(save) for save in sent]
        # The profiles travel as arguments of their own: Redis' MessagePack reader
        # predates the binary type.
        blobs = [_blob(save) for save in sent]
        chunks = [
            [
                _pack([self.keys.prefix, self.retention_ms, saves[at : at + CHUNK]]),
                *blobs[at : at + CHUNK],
            ]
            for at in range(0, len(saves), CHUNK)
        ]

        def build(pipe: Any) -> None:
            for chunk in chunks:
                self._write.call(pipe, [], chunk)
            if marks:
                self._watermark.call(pipe, [self.keys.watermark], marks)

        replies = await self._execute(build, "write", durable=True)
        return [int(code) for reply in replies[: len(chunks)] for code in reply]

    async def _write_shards(self, sent: list[Save], marks: list[Any]) -> list[int]:
        """A Redis Cluster: hold, save, settle (``store/links.py``), each step one round
        trip when it has anything to do; the answer per save as ``write.lua`` gives it."""
        token = uuid.uuid4().hex  # names this write's holds
        reaches = [links.reach(self.keys, s, self.shard_of, self.retention_ms) for s in sent]
        codes = [0] * len(sent)
        holding = [n for n, r in enumerate(reaches) if r.hold]
        try:
            if holding:
                await self._hold_links(reaches, holding, codes, token)
            await self._save_shards(sent, reaches, codes, marks, token)
        except Exception:
            await self._release(reaches, holding, token)  # else they expire
            raise
        settling = [n for n, r in enumerate(reaches) if r.settled or (r.hold and codes[n] <= 0)]
        if settling:
            moved = await self._settle_links(reaches, settling, codes, token)
            if moved:
                metrics.CLUSTER_RETIRES_KEPT.inc(moved)
                log.warning(
                    "%d merged profiles were written after their merge's hold expired and "
                    "were kept: their events since are not in the customer they merged "
                    "into (cdpulse rebuild repairs it)",
                    moved,
                )
        return codes

    async def _hold_links(
        self, reaches: list[links.Reach], holding: list[int], codes: list[int], token: str
    ) -> None:
        """Step 1: each save's links checked and made, its retired profiles held; a save
        refused in any slot is answered so and not sent."""
        calls: dict[Shard, list[tuple[int, list[list[Any]]]]] = defaultdict(list)
        for n in holding:
            for shard, entries in reaches[n].hold.items():
                calls[shard].append((n, entries))
        head = [token, links.HOLD_MS, self.retention_ms]

        def build(pipe: Any) -> None:
            for shard, groups in calls.items():
                request = [shard.head, *head, [entries for _, entries in groups]]
                touched = [
                    self.keys.of(entry[1]) + kind
                    for _, entries in groups
                    for entry in entries
                    for kind in ("hold", "alias", "profile")
                ]
                self._hold.call(pipe, touched, [_pack(request)])

        for (_, groups), reply in zip(
            calls.items(), await self._execute(build, "hold", durable=True), strict=True
        ):
            for (n, _), status in zip(groups, reply, strict=True):
                codes[n] = min(codes[n], int(status))

    async def _save_shards(
        self,
        sent: list[Save],
        reaches: list[links.Reach],
        codes: list[int],
        marks: list[Any],
        token: str,
    ) -> None:
        """Step 2: the saves every hold granted, each shard's in its own calls, with the
        entries beside them in other slots and the watermarks."""
        by_shard: dict[Shard, list[int]] = defaultdict(list)
        for n, save in enumerate(sent):
            if codes[n] == 0:
                by_shard[self.keys.shard(save.profile.id)].append(n)
        chunks: list[tuple[Shard, list[int]]] = [
            (shard, members[at : at + CHUNK])
            for shard, members in by_shard.items()
            for at in range(0, len(members), CHUNK)
        ]

        def build(pipe: Any) -> None:
            for shard, members in chunks:
                rows = [self._save_row(sent[n]) for n in members]
                where = [shard.base, shard.head, token]
                request = _pack([self.keys.prefix, self.retention_ms, rows, where])
                blobs = [_blob(sent[n]) for n in members]
                self._write.call(pipe, _touched(self.keys, shard, rows), [request, *blobs])
            for _, members in chunks:
                for n in members:
                    for command in reaches[n].beside:
                        pipe.execute_command(*command)
            if marks:
                self._watermark.call(pipe, [self.keys.watermark], marks)

        replies = await self._execute(build, "write", durable=True)
        for (_, members), reply in zip(chunks, replies, strict=False):
            for n, code in zip(members, reply, strict=True):
                codes[n] = int(code)

    async def _settle_links(
        self, reaches: list[links.Reach], settling: list[int], codes: list[int], token: str
    ) -> int:
        """Step 3: what the written saves change in other slots, and every hold released;
        how many retired profiles had moved (and were kept)."""
        calls: dict[Shard, list[list[Any]]] = defaultdict(list)
        for n in settling:
            entries = reaches[n].settled if codes[n] > 0 else reaches[n].released
            for shard, found in entries.items():
                calls[shard].extend(found)

        def build(pipe: Any) -> None:
            for shard, entries in calls.items():
                request = [shard.profile_count, shard.head, token, self.retention_ms, entries]
                touched = [shard.profile_count]
                for entry in entries:
                    base = self.keys.of(entry[1])
                    touched += [base + kind for kind in ("profile", "hold", "alias", "merged")]
                    if entry[0] == "gone":
                        touched += [*entry[3], *entry[4]]
                self._settle.call(pipe, touched, [_pack(request)])

        return sum(int(moved) for moved in await self._execute(build, "settle", durable=True))

    async def _release(self, reaches: list[links.Reach], holding: list[int], token: str) -> None:
        """A write that failed halfway releases its holds if Redis answers."""
        try:
            await self._settle_links(reaches, holding, [0] * len(reaches), token)
        except Exception:  # the holds expire after HOLD_MS
            log.warning("could not release a failed write's holds; they expire", exc_info=True)

    def _remember(self, changes: Changes, written: dict[str, int]) -> None:
        """Settle the cache after a write: a staged save that was written stays as the
        version it wrote; one refused, a retired visitor and a profile lent and not
        saved (a stage may have changed it in place) go."""
        if self.cache is None:
            return
        saved = set()
        for save in changes.saves:
            profile_id = save.profile.id
            moved = [i for gone in save.customers.values() for i in gone.linked]
            for visitor in (*save.links, *save.retire, *moved):
                if self._staged_links.get(visitor) == profile_id:
                    del self._staged_links[visitor]  # written (or refused): Redis answers
            if self._staged_due.get(profile_id, (0, 0, None))[2] is save:
                del self._staged_due[profile_id]  # written or refused: Redis answers
            code = written.get(profile_id, 0)
            staged = save.staged
            if code > 0:
                saved.add(profile_id)
                if staged is not None:
                    # Batches that started from it may write now. It may be lent to one
                    # (out of the cache): that batch puts back what it saves.
                    staged.staged, staged.version = False, code
                else:
                    self.cache.put(profile_id, Stored(code, save.profile, save.blob))
            else:
                # Refused: what is kept of it goes, a later batch's staged save built on
                # it too (that batch's write refuses it), so a re-read reads Redis.
                self.cache.drop(profile_id)
            for visitor in save.retire:
                self.cache.drop(visitor)
        for profile_id, entry in changes.lent.items():
            if profile_id not in saved:
                self.cache.drop_if(profile_id, entry)

    def discard(self) -> None:
        """A batch failed: what it took from the cache may have been changed in place."""
        if self.cache is not None:
            self.cache.clear()
        self._staged_links.clear()
        self._staged_due.clear()

    def _save_row(self, save: Save) -> list[Any]:
        """One save as ``write.lua`` reads it: id, version, links, operations. On a Redis
        Cluster only what is on its shard's slot: the rest is ``links.reach``'s."""
        k = self.keys
        profile_id = save.profile.id
        own = k.shard(profile_id)
        alone = not k.cluster  # everything in this one call
        ops: list[list[Any]] = (
            [["del", k.profile(visitor), version] for visitor, version in save.retire.items()]
            if alone
            else []
        )
        shard = self.shard_of(profile_id)
        for kind, due in (("churn", save.churn_due), ("trigger", save.trigger_due)):
            if kind not in save.schedules:
                continue
            if due is None:
                ops.append(["zrem", own.due(shard, kind), profile_id])
            else:
                ops.append(["zadd", own.due(shard, kind), str(due), profile_id])
        for segment in save.entered:
            ops.append(["zadd", own.members(segment), "0", profile_id])
        for segment in save.left:
            ops.append(["zrem", own.members(segment), profile_id])
        if save.summary is not None:
            ops.append(["hset", own.clv_summaries, profile_id, save.summary.decode()])
        for pseudonym in save.identities:
            ops.append(["identity", alone and k.identity(pseudonym), pseudonym])
        if save.pseudonym is not None and alone:
            ops.append(["setnx", k.profile_of(save.pseudonym), profile_id])
        for experiment, variant in save.conversions:
            ops.append(
                [
                    "convert",
                    own.experiment(experiment, "converted"),
                    own.experiment(experiment, "counts"),
                    profile_id,
                    variant,
                ]
            )
        for claim, rule, counter in save.tallies:
            earlier = k.fired(profile_id, claim)  # an earlier version's claim, if it stands
            ops.append(["claim", earlier, own.uplift(rule), CLAIM_SECONDS, counter, claim])
        for period, counts in save.kpis.items():
            flat = [x for name, amount in counts.items() for x in (name, amount)]
            ops.append(["kpi", kpi_key(own.base, period), FIELDS_CAP, flat])
        customers = []
        for merged, gone in save.customers.items() if alone else ():
            customers.append([merged, gone.linked])
            merged_shard = self.shard_of(merged)
            ops.append(["zrem", own.due(merged_shard, "churn"), merged])
            ops.append(["zrem", own.due(merged_shard, "trigger"), merged])
            ops.append(["hdel", own.clv_summaries, merged])
            for segment in gone.segments:
                ops.append(["zrem", own.members(segment), merged])
        return [
            profile_id,
            save.version,
            save.links if alone else [],
            ops,
            save.profile.customer_id is not None,
            customers,
        ]

    # --- both -----------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        for each in (self._read, self._write, self._watermark, self._due):
            await each.load(self.client)
        if self.keys.cluster:
            for each in (self._hold, self._settle):
                await each.load(self.client)

    async def _execute(
        self, build: Callable[[Any], None], op: str, durable: bool = False
    ) -> list[Any]:
        """One round trip of the commands ``build`` adds to a pipeline; ``durable`` (a
        write) on a Redis Cluster: answered once a replica holds it (``store/replicas``).

        Commands are sent again, alone, when a server did not know the scripts (it
        restarted; on a cluster, a promoted replica: a refused call did nothing), and on
        a cluster when their slot had moved to another master (MOVED: the slot map is
        read again). A slot being moved right now (ASK, TRYAGAIN, a script reaching a
        key already moved) fails the round trip as ``SlotMoving``, to be retried: a
        script is never run on the node a slot is moving to, where the keys not moved
        yet would read as missing."""
        started = time.perf_counter()
        commands = _Commands()
        build(commands)
        replies: list[Any] = [None] * len(commands.sent)
        todo = list(range(len(commands.sent)))
        for _ in range(RESENDS):
            for n, reply in zip(todo, await self._send(commands, todo, durable), strict=True):
                replies[n] = reply
            forgot = [n for n in todo if isinstance(replies[n], NoScriptError)]
            moved = [n for n in todo if isinstance(replies[n], MovedError)]
            if forgot:
                await self.load_scripts()
            if moved and isinstance(self.client, aioredis.RedisCluster):
                await self.client.nodes_manager.initialize()
            todo = sorted((*forgot, *moved))
            if not todo:
                break
        self.round_trips += 1
        metrics.REDIS_SECONDS.labels(op).observe(time.perf_counter() - started)
        for reply in replies:
            if isinstance(reply, (AskError, TryAgainError)) or (
                isinstance(reply, ResponseError) and str(reply).startswith(_NOT_LOCAL)
            ):
                raise SlotMoving(f"{op}: a slot of this batch is moving between masters") from reply
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _send(self, commands: _Commands, which: list[int], durable: bool) -> list[Any]:
        """Send some of the recorded commands in one pipeline; their replies."""
        pipe: Any = self.client.pipeline(transaction=False)
        commands.replay(pipe, which)
        if self._replicas is None:
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies
        waits = self._replicas.wait(pipe) if durable else 0
        # Redirections are answered above, not followed here (see ``_execute``).
        replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
        if waits:
            replies, waited = replies[:-waits], replies[-waits:]
            await self._replicas.count(waited)
        return replies
