"""The erasure ledger loaded from its Kafka topic into Redis: what ``cdpulse rebuild``
does before it replays anything.

Redis holds the ledger every batch reads; the compacted topic ``CDPULSE_TOPIC_ERASURES``
holds a copy that the worker writes before it erases anything (``pipeline.batch``). A
Redis that lost its data, or a new one, has no ledger: replaying the input topics into
it would bring back every erased customer whose erasure request retention already took
from the customers topic while their other events are still retained. Loading the topic
first keeps them out.

The topic is read like the history (``ingest.rebuild.History``): by consumers in no
group, from the first retained offset to the end offsets seen at the start. A record
whose value does not read still marks its pseudonym erased (at time 0: unknown), since
keeping an erased customer out matters more than the time; a record whose key is not a
pseudonym, or a tombstone (cdpulse writes neither), is not loaded, and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer

from cdpulse.ingest.rebuild import History, RebuildError
from cdpulse.privacy.ledger import LedgerRecordError, read_erased_at, read_pseudonym
from cdpulse.store.ledger import RedisLedger

CHUNK = 1000  # records read per progress step


@dataclass
class LedgerLoad:
    """What loading the ledger's topic read and wrote."""

    records: int = 0  # read from the topic
    loaded: int = 0  # entries written to Redis (each at most once per ledger)
    unreadable: int = 0  # of them, with a value that does not read: loaded at time 0
    skipped: int = 0  # keys that are not pseudonyms, and tombstones: not loaded

    @property
    def problems(self) -> list[str]:
        """What an operator should look at, one sentence each."""
        out = []
        if self.unreadable:
            out.append(
                f"{self.unreadable} erasure ledger records have a value that does not read; "
                "their pseudonyms are kept erased (time unknown)"
            )
        if self.skipped:
            out.append(
                f"{self.skipped} erasure ledger records were not loaded: a key that is not "
                "a pseudonym, or a tombstone (cdpulse writes neither: who else writes the "
                "topic?)"
            )
        return out


def open_ledger_topic(connect: Callable[[], KafkaConsumer], topic: str) -> History:
    """The ledger's topic, whole; refuses when it does not exist (a rebuild without it
    could bring erased customers back)."""
    try:
        return History(connect, [topic])
    except RebuildError as exc:
        raise RebuildError(
            f"the erasure ledger cannot be read ({exc}); `cdpulse topics` creates its topic "
            "(CDPULSE_TOPIC_ERASURES): a rebuild without it would bring back the erased "
            "customers whose requests retention took"
        ) from exc


async def load_ledger(
    topic: History,
    ledgers: Sequence[RedisLedger],
    on_records: Callable[[int], None] = lambda n: None,
) -> LedgerLoad:
    """Add every entry of the ledger's ``topic`` to each of ``ledgers`` (an entry a
    ledger holds already keeps its time); ``on_records`` gets each chunk's size."""
    report = LedgerLoad()
    entries: dict[str, int] = {}
    unknown: set[str] = set()  # pseudonyms with a record whose value does not read
    for chunk in topic.batches(CHUNK):
        for message in chunk:
            try:
                pseudonym = read_pseudonym(message.key)
            except LedgerRecordError:
                report.skipped += 1
                continue
            if message.value is None:
                report.skipped += 1  # a tombstone erases nothing: the ledger never shrinks
                continue
            try:
                at = read_erased_at(message.value)
            except LedgerRecordError:
                report.unreadable += 1
                unknown.add(pseudonym)
                continue
            # Until compaction runs, an id erased twice has two records: the Redis ledger
            # keeps the first time, and so does this.
            entries[pseudonym] = min(at, entries.get(pseudonym, at))
        report.records += len(chunk)
        on_records(len(chunk))
    for pseudonym in unknown - entries.keys():
        entries[pseudonym] = 0
    for ledger in ledgers:
        await ledger.restore(sorted(entries.items()))
    report.loaded = len(entries)
    return report
