"""The audit of reads: every read of customer data leaves a record on ``cdp.read-audit``.

Which routes read customer data, and where their answer names the customers, is one
table (``AUDITED``); ``tests/unit/test_read_audit.py`` walks the api's route table and
fails on a route whose path names a customer and which is neither in it nor, with the
reason, in ``AUDITED_ELSEWHERE``. The guard (``app/auth.py``), the one door of every
route, hands each answered request to ``ReadTrail.observe``.

A read never waits on Kafka: ``observe`` only appends what the record needs to a bounded
queue (no encoding, no hashing, no I/O). A handler that answers with ``answering`` hands
the JSON object it answered, and the subjects are read from it; otherwise they are
parsed back from the answer's body. The api's timer turns the queue into records
every ``CDPULSE_READ_AUDIT_FLUSH_SECONDS`` and sends them as record batches, awaiting
the broker's acknowledgement (``app/outlet.py``). A send that fails keeps the records
queued, in order, for the next flush; each keeps its id, so a send that timed out here
and still reached the broker gives a duplicate a reader drops (``cdpulse audit`` does).

When Kafka does not take them, the queue fills up to ``CDPULSE_READ_AUDIT_QUEUE``
records; beyond that a read's record is dropped, counted in
``cdpulse_read_audit_dropped_total``, and the read is still served. The decision: an
unaudited read is a fault an operator must see, not one that takes every read down with
Kafka; so ``/readyz`` answers 503 (with the reason) while records are being dropped, or
once sends have failed for ``CDPULSE_STALL_SECONDS``, and a load balancer sends the reads
to an api whose audit works. Records queued when the process stops are sent by a last
flush before the producer closes, as far as Kafka takes them within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import faust
from aiohttp import web
from faust.web import Request, Response
from mode.types.signals import BaseSignalT

from cdpulse.app.auth import Guard, Verdict
from cdpulse.app.outlet import KafkaOutlet
from cdpulse.ops import metrics
from cdpulse.pipeline.outputs import Outputs, Stream
from cdpulse.privacy.pseudonyms import Pseudonyms
from cdpulse.privacy.read_audit import UNSPECIFIED, ReadRecord
from cdpulse.settings import Settings

log = logging.getLogger(__name__)

BATCH = 2000  # records per send, at most
LAST_FLUSH_SECONDS = 5.0  # what a stopping api gives its queued records


@dataclass(frozen=True, slots=True)
class Subjects:
    """Where a route's request or answer names the customers a read was about: a path
    parameter holding an id, top-level fields of the JSON answer holding one id each, and
    top-level fields holding lists of ids."""

    path: str | None = None
    fields: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()


# (method, route pattern) -> where its subjects are. A profile's answer names its stored
# id and customer id: a read by an anonymous id of a known customer is found by either.
_PROFILE = Subjects("profile_id", ("id", "customer_id"))
AUDITED: Mapping[tuple[str, str], Subjects] = {
    ("GET", "/v1/profiles/{profile_id}"): _PROFILE,
    ("GET", "/v1/profiles/{profile_id}/export"): _PROFILE,
    ("GET", "/v1/profiles/{profile_id}/recommendations"): Subjects("profile_id", ("customer_id",)),
    ("GET", "/v1/profiles/{profile_id}/triggers"): Subjects("profile_id", ("customer_id",)),
    ("GET", "/v1/profiles/{profile_id}/propensity"): Subjects("profile_id", ("customer_id",)),
    ("POST", "/v1/identities/lookup"): Subjects(fields=("profile_id",)),
    ("GET", "/v1/segments/{name}/members"): Subjects(lists=("members",)),
    # the answer says whether the customer is in the experiment's audience
    ("POST", "/v1/experiments/{name}/assignment/{customer_id}"): Subjects("customer_id"),
}
# Routes that name a customer and are audited by another record, with where.
AUDITED_ELSEWHERE: Mapping[tuple[str, str], str] = {
    ("DELETE", "/v1/profiles/{profile_id}"): "an erasure: the worker's erasure record on "
    "CDPULSE_TOPIC_AUDIT names who asked and whom it erased",
    ("POST", "/v1/admin/merges"): "a merge: the worker's merge record on CDPULSE_TOPIC_AUDIT",
}


# The JSON object a handler answered with (``answering``), kept on its response.
_ANSWER: web.ResponseKey[dict[str, Any]] = web.ResponseKey("cdpulse_answer")


def answering(response: Response, answer: dict[str, Any]) -> Response:
    """``response``, the JSON encoding of ``answer``, with ``answer`` kept for the read
    audit: the subjects are then read from it instead of parsed back from the body."""
    if isinstance(response, web.StreamResponse):
        response[_ANSWER] = answer
    return response


class Answered(NamedTuple):
    """An answered read as the guard saw it: what its record is made of, later."""

    id: str
    at: int
    token: str
    method: str
    route: str
    status: int
    params: dict[str, str]
    # The JSON answer, or the object it encodes (``answering``), kept only where it names
    # the subjects.
    body: bytes | dict[str, Any] | None
    subjects: Subjects


def subject_ids(answered: Answered) -> list[str]:
    """The ids ``answered`` was about, in order, each once: from its path, and from its
    answer when it succeeded (an answer that is not the JSON expected names none)."""
    spec = answered.subjects
    ids: list[str] = []
    if spec.path is not None and spec.path in answered.params:
        ids.append(answered.params[spec.path])
    answer: Any = answered.body
    if isinstance(answer, bytes):
        try:
            answer = json.loads(answer)
        except ValueError:
            answer = None
    if isinstance(answer, dict):
        ids += [answer[f] for f in spec.fields if isinstance(answer.get(f), str)]
        for name in spec.lists:
            found = answer.get(name)
            if isinstance(found, list):
                ids += [i for i in found if isinstance(i, str)]
    return list(dict.fromkeys(ids))


def record_of(
    answered: Answered, pseudonyms: Pseudonyms, purposes: Mapping[str, str]
) -> ReadRecord:
    """The audit record of ``answered``: ids as pseudonyms, and the route's other path
    parameters only when the answer succeeded (they named something configured)."""
    spec = answered.subjects
    params = (
        {k: v for k, v in answered.params.items() if k != spec.path}
        if 200 <= answered.status < 300
        else {}
    )
    return ReadRecord(
        answered.id,
        answered.at,
        answered.token,
        purposes.get(answered.token) or UNSPECIFIED,
        answered.method,
        answered.route,
        answered.status,
        [pseudonyms.of_id(i) for i in subject_ids(answered)],
        params,
    )


Send = Callable[[list[ReadRecord]], Awaitable[None]]


class ReadTrail:
    """The api process's queue of read audit records and their sending."""

    def __init__(
        self,
        send: Send,
        pseudonyms: Pseudonyms,
        purposes: Mapping[str, str],
        capacity: int,
        stall_seconds: float,
        *,
        batch: int = BATCH,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._send = send
        self._pseudonyms = pseudonyms
        self._purposes = dict(purposes)
        self.capacity = capacity
        self.stall_seconds = stall_seconds
        self.batch = batch
        self._clock = clock
        self._wall = wall
        self._queue: deque[Answered] = deque()
        # Ids unique across processes and restarts without a random draw per read.
        self._origin = uuid.uuid4().hex[:16]
        self._numbers = itertools.count(1)
        self.sent = 0
        self.dropped = 0
        self._dropped_at: float | None = None
        self._failing_since: float | None = None
        self._cause = ""
        self._flushing = asyncio.Lock()  # the timer's flush and the last one at stop

    def observe(self, request: Request, verdict: Verdict, response: Response) -> None:
        """The guard's hook after a handler answered: queue the record of a read of
        customer data. Never raises, never waits."""
        match: Any = request.match_info  # aiohttp's UrlMappingMatchInfo
        resource = match.route.resource
        route = resource.canonical if resource is not None else ""
        spec = AUDITED.get((request.method, route))
        if spec is None:
            return
        status = response.status
        body: bytes | dict[str, Any] | None = None
        if (spec.fields or spec.lists) and 200 <= status < 300:
            kept = response.get(_ANSWER) if isinstance(response, web.StreamResponse) else None
            body = kept if kept is not None else response.body
        self.note(
            Answered(
                f"{self._origin}-{next(self._numbers)}",
                int(self._wall() * 1000),
                str(verdict.name),
                request.method,
                route,
                status,
                dict(match),
                body if isinstance(body, bytes | dict) else None,
                spec,
            )
        )

    def note(self, answered: Answered) -> None:
        """Queue ``answered``; drop and count it when the queue is full."""
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            self._dropped_at = self._clock()
            metrics.READ_AUDIT_DROPPED.inc()
            return
        self._queue.append(answered)
        metrics.READ_AUDIT_QUEUED.set(len(self._queue))

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def flush(self) -> int:
        """Send the queued records, oldest first, a batch at a time; how many were sent.
        A failed send keeps its batch queued and ends the flush."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        sent = 0
        while self._queue:
            chunk = list(itertools.islice(self._queue, self.batch))
            records = [record_of(a, self._pseudonyms, self._purposes) for a in chunk]
            try:
                await self._send(records)
            except Exception as exc:  # Kafka down, a timeout, an ACL: kept, retried
                if self._failing_since is None:
                    self._failing_since = self._clock()
                    log.warning("read audit records not sent (%s); kept queued", type(exc).__name__)
                self._cause = type(exc).__name__
                break
            for _ in chunk:  # reads answered meanwhile were appended on the right
                self._queue.popleft()
            sent += len(chunk)
            self._failing_since, self._cause = None, ""
        self.sent += sent
        metrics.READ_AUDIT_SENT.inc(sent)
        metrics.READ_AUDIT_QUEUED.set(len(self._queue))
        return sent

    def trouble(self) -> str:
        """Why this api is not ready on account of its audit ("" when it is)."""
        now = self._clock()
        if self._dropped_at is not None and now - self._dropped_at < self.stall_seconds:
            return (
                f"read audit records are being dropped ({self.dropped} so far; the queue of "
                f"{self.capacity} is full): reads are served without their audit record; "
                "check that Kafka takes records on CDPULSE_TOPIC_READ_AUDIT"
            )
        if self._failing_since is not None and now - self._failing_since >= self.stall_seconds:
            return (
                f"read audit records not sent for {now - self._failing_since:.0f}s "
                f"(last: {self._cause}; {len(self._queue)} queued of {self.capacity})"
            )
        return ""

    def readiness(self) -> tuple[dict[str, Any], str]:
        """What ``/readyz`` shows of the audit, and why it is not ready ("" when it is)."""
        return {"queued": len(self._queue), "sent": self.sent, "dropped": self.dropped}, (
            self.trouble()
        )


def register_read_audit(
    app: faust.App, settings: Settings, guard: Guard, topic: str, pseudonyms: Pseudonyms
) -> ReadTrail:
    """The api's read trail: the guard's hook, the flush timer, the last flush at stop."""
    outlet = KafkaOutlet(app, {Stream.AUDIT: topic})

    async def send(records: list[ReadRecord]) -> None:
        outputs = Outputs()
        for record in records:
            # By subject: one customer's reads stay in order on one partition.
            key = (record.subjects[0] if record.subjects else record.token).encode()
            outputs.add(Stream.AUDIT, key, record.to_json())
        await asyncio.wait_for(outlet.publish(outputs), settings.produce_timeout_seconds)

    purposes = {name: token.purpose for name, token in settings.api_tokens.items()}
    trail = ReadTrail(send, pseudonyms, purposes, settings.read_audit_queue, settings.stall_seconds)
    guard.observers.append(trail.observe)

    @app.timer(interval=settings.read_audit_flush_seconds)  # type: ignore[untyped-decorator]
    async def send_read_audit() -> None:
        await trail.flush()

    @app.on_before_shutdown.connect
    async def last_read_audit(
        sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
    ) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trail.flush(), LAST_FLUSH_SECONDS)
        if trail.queued:
            log.warning("stopping with %d read audit records unsent", trail.queued)

    return trail
