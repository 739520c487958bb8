"""Recommendations in the stream: the records learners read, and what they publish.

The profile worker forwards each applied item event (product viewed, added, ordered) of
a customer who allows analytics and personalization, with the customer's context from
just before it, as an ``ItemEvent`` to ``cdp.reco-events``, keyed by the customer's
pseudonym (the topic's history outlives an erasure). An erasure adds a ``Forget``
record under the same key. Partitions are shards (``shards.shard_of``): the learner of
a partition folds its records in order (``learn_records``), publishes a snapshot of its
shard every few seconds with the last offset it holds, and after each batch publishes
the recommendation lists that are due (``due_lists``). Serving merges the newest
snapshot of every shard (``merge_snapshots``).

Between two snapshots a shard's progress lives in memory only, while the learner commits
its offsets after every batch: a learner that dies loses what its shards learned since
their last snapshots (the records up to its committed offsets are not read again), and a
record redelivered at or below a snapshot's offset is skipped, so nothing counts twice.
Co-visitation counts are at most once, not exactly once — unlike profiles, recommendation
statistics tolerate it.

>>> item = ItemEvent("p-1", "e-1", 1_000, [Interaction("P-1", "shoes", 1, 1_000)], Context())
>>> ItemEvent.from_json(item.to_json()) == item
True
>>> item.to_json()[:65]
b'{"customer_id":"p-1","event_id":"e-1","at":1000,"items":[["P-1","'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import msgspec
from msgspec import Meta

from cdpulse.contract.outputs import RecommendationList, RecommendedItem
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco.interactions import LEVEL_OF_TYPE, Id, Interaction, Millis, interactions
from cdpulse.models.reco.recommender import Recommendation
from cdpulse.profile.model import Profile

ITEM_TYPES = frozenset(LEVEL_OF_TYPE)


class ItemEvent(msgspec.Struct, frozen=True, gc=False):
    """An applied item event and the customer's context just before it: a learner's input.

    Only what the recommender reads travels: the event's products with their level and
    time, its id (a list names the event that caused it) and the customer's context.
    """

    customer_id: Id  # the customer's pseudonym
    event_id: Id
    at: Millis  # event time
    items: Annotated[list[Interaction], Meta(min_length=1)]
    context: Context
    # Kafka's append time of the event's message (epoch seconds), for the latency of the
    # recommendation list it causes; 0.0 when unknown.
    ingested: float = 0.0

    @classmethod
    def of(cls, customer_id: str, event: Any, profile: Profile, ingested: float = 0.0) -> ItemEvent:
        """The worker's record of ``event`` (a struct, model or dict) of ``customer_id``,
        with ``profile`` as it was before the event."""
        items = interactions(event)
        # The worker's events are structs: a plain type check before the ABC's, whose
        # ``isinstance`` costs ~1 µs per item event.
        struct = isinstance(event, msgspec.Struct)
        if not struct and isinstance(event, Mapping):
            event_id = str(event["event_id"])
        else:
            event_id = str(event.event_id)
        if not items:
            raise ValueError(
                f"event {event_id}: not an item event; only {', '.join(sorted(ITEM_TYPES))} "
                "are forwarded to the recommender"
            )
        return cls(
            customer_id, event_id, items[0].time, items, Context.from_profile(profile), ingested
        )

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, raw: bytes) -> ItemEvent:
        """Decode and check one record; ``ValueError`` (msgspec's) names what is wrong."""
        return _ITEM_DECODER.decode(raw)


class Forget(msgspec.Struct, frozen=True, gc=False):
    """An erasure's record on ``cdp.reco-events``: drop the customer's shopper state."""

    forget: Id  # the customer's pseudonym

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()
_ITEM_DECODER = msgspec.json.Decoder(ItemEvent)
_FORGET_DECODER = msgspec.json.Decoder(Forget)
_BUNDLE_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


def read_record(raw: bytes | msgspec.Raw) -> ItemEvent | Forget:
    """One ``cdp.reco-events`` record; ``ValueError`` for anything else."""
    try:
        return _ITEM_DECODER.decode(raw)
    except msgspec.ValidationError as item_error:
        try:
            return _FORGET_DECODER.decode(raw)
        except msgspec.ValidationError:
            raise item_error from None


@dataclass
class Learned:
    """What a batch of records did: item events learned (in order), customers forgotten,
    the offsets of messages holding a record that could not be read (skipped; count and
    log them), and the ranker's examples as the drift monitor reads them: (offset, event
    time, the features and the score before learning)."""

    items: list[ItemEvent] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    malformed: list[int] = field(default_factory=list)
    scored: list[tuple[int, int, list[float]]] = field(default_factory=list)


def learn_records(recommender: Recommender, records: Iterable[tuple[int, bytes]]) -> Learned:
    """Fold (offset, value) records of one shard into its recommender, in order.

    A message is one record or a worker's bundle of them (``outputs.bundles``), read in
    order. Never raises on input: a record that is not an ``ItemEvent`` or ``Forget`` (the
    engine writes nothing else) is skipped, and its message's offset reported once.
    """
    learned = Learned()
    for offset, raw in records:
        unreadable = False
        for one in _unbundled(raw):
            try:
                record = read_record(one)
            except ValueError:
                unreadable = True
                continue
            if isinstance(record, Forget):
                recommender.forget(record.forget)
                learned.forgotten.append(record.forget)
            else:
                scored = recommender.learn_one(record.customer_id, record.items, record.context)
                learned.items.append(record)
                if scored:  # a fifth of item events give examples (``examples``)
                    learned.scored += [(offset, record.at, [*x, score]) for x, score in scored]
        if unreadable:
            learned.malformed.append(offset)
    return learned


def _unbundled(raw: bytes) -> list[bytes] | list[msgspec.Raw]:
    """The records of one message: a worker's bundle (a JSON array, ``outputs.bundles``)
    or one record (what workers sent before bundles, and what anything else may send)."""
    if raw[:1] == b"[":
        try:
            found = _BUNDLE_DECODER.decode(raw)
        except msgspec.DecodeError:
            found = []
        if found:
            return found
    return [raw]  # one record, or something unreadable read (and refused) as one


@dataclass(frozen=True, slots=True)
class RecoSnapshot:
    """A published recommender and the last reco-events offset it holds (of its shard)."""

    version: int
    recommender: Recommender
    offset: int

    def served(self) -> RecoSnapshot:
        """This snapshot for serving only: read-only, its ranking reads remembered."""
        return merge_snapshots([self])


def merge_snapshots(snapshots: Sequence[RecoSnapshot]) -> RecoSnapshot:
    """The newest snapshot of every shard, served as one (``Recommender.merge``).

    Its version is the sum of the shards' versions, so it grows whenever one of them is
    republished; its offset is the shard's for one shard, else -1 (offsets are per shard).
    """
    if not snapshots:
        raise ValueError("merge_snapshots needs at least one shard's snapshot")
    recommender = Recommender.merge([s.recommender for s in snapshots])
    offset = snapshots[0].offset if len(snapshots) == 1 else -1
    return RecoSnapshot(sum(s.version for s in snapshots), recommender, offset)


def recommendation_list(
    customer_id: str,
    items: list[Recommendation],
    snapshot: RecoSnapshot,
    cause: str | None,
) -> RecommendationList:
    """The document published to ``cdp.recommendations`` and served over HTTP."""
    return RecommendationList(
        customer_id=customer_id,
        items=[
            RecommendedItem(product_id=r.product_id, score=r.score, reason=r.reason) for r in items
        ],
        model_version=f"{snapshot.recommender.model_version}.s{snapshot.version}",
        caused_by=cause,
        generated_at=datetime.now(UTC),
    )


class DueList(NamedTuple):
    """A recommendation list to publish, keyed by ``customer_id``; ``ingested``: the Kafka
    append time of the event that caused it (0.0: unknown), for its latency."""

    customer_id: str
    document: RecommendationList
    ingested: float


def due_lists(
    snapshot: RecoSnapshot,
    learned: Sequence[ItemEvent],
    throttle: ListThrottle,
    recipient: Callable[[str], str | None],
    k: int = 10,
) -> list[DueList]:
    """The lists a learner publishes after a batch: one per customer with an item event in
    it, caused by their newest one, unless they had one less than the throttle's interval
    (event time) before.

    ``snapshot`` serves them: the learner's own shard as it is now, so the session holds
    the event, merged with the other shards' newest snapshots. The context is the one the
    event carries, from just before it. ``recipient`` names the customer behind a
    pseudonym for downstream services (None: none to name, e.g. erased; no list).
    Consent needs no check here: the worker forwards item events only of customers who
    allow personalization.
    """
    newest: dict[str, ItemEvent] = {}
    for item in learned:
        newest[item.customer_id] = item
    out = []
    for pseudonym, cause in newest.items():
        if not throttle.due(pseudonym, cause.at):
            continue
        customer = recipient(pseudonym)
        if customer is None:
            continue
        items = snapshot.recommender.recommend(pseudonym, cause.context, k=k)
        document = recommendation_list(customer, items, snapshot, cause.event_id)
        out.append(DueList(customer, document, cause.ingested))
    return out


class ListThrottle:
    """Whether a customer is due a new recommendation list, in event time.

    A list costs a candidate generation and a ranking, and a shopper clicking through
    products every few seconds gains little from a list per click. The learner of a
    customer's shard remembers when it last published one; after a rebalance the new
    owner may publish one early, which is harmless. At most ``capacity`` customers are
    remembered, the least recently published forgotten first.

    >>> throttle = ListThrottle(30_000)
    >>> [throttle.due("c", t) for t in (0, 10_000, 30_000, 31_000)]
    [True, False, True, False]
    """

    def __init__(self, interval_ms: int, capacity: int = 200_000) -> None:
        self.interval_ms = interval_ms
        self.capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()

    def due(self, customer_id: str, at_ms: int) -> bool:
        last = self._last.get(customer_id)
        if last is not None and at_ms - last < self.interval_ms:
            return False
        self._last[customer_id] = at_ms
        self._last.move_to_end(customer_id)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return True
