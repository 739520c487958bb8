"""The first stage: raw messages in, events and dead letters out. Total: never raises.

Each message is decoded once by the fast mirror of the contract; whatever it refuses
is decided by the contract itself (``validation.decode``), which gives the rejection its
reason. Anything that raises while a message is decoded is that message's rejection
(``processing_error``), never the batch's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from cdpulse.contract import mirror, validation
from cdpulse.contract.custom_schemas import CustomSchemas
from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.message import Message
from cdpulse.contract.mirror import Event
from cdpulse.contract.validation import Rejection


class Item(msgspec.Struct, gc=False):
    """A decoded event, where it came from, and the profile it is applied to."""

    message: Message
    event: Event
    source: str  # "topic:partition:key": messages sharing it arrive in offset order
    target: str = ""
    # The identity rule that refused its link or its admin merge (``pipeline/identity.py``);
    # an identify is then without its anonymous id. Decided again as refused on a retry.
    refused: str = ""


@dataclass(slots=True)
class Decoded:
    """One batch, decoded."""

    items: list[Item] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    consumed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, type)
    rejected: Counter[str] = field(default_factory=Counter)  # reason

    def absorb(self, part: Decoded) -> None:
        """Add ``part``, the next messages of the same batch decoded."""
        self.items += part.items
        self.dead_letters += part.dead_letters
        self.consumed.update(part.consumed)
        self.rejected.update(part.rejected)


def decode_batch(
    messages: list[Message],
    *,
    max_bytes: int,
    max_future_skew: timedelta,
    now: datetime | None = None,
    schemas: CustomSchemas | None = None,
) -> Decoded:
    """Split ``messages`` into events and dead letters.

    An event time may be at most ``max_future_skew`` after its message's Kafka timestamp
    (CreateTime or LogAppendTime), not after the wall clock: a rebuild replays the same
    messages with the same timestamps, so it decides as the live worker did, however
    late it runs. A message without a timestamp is judged against ``now``. A custom
    event is held to its schema in ``schemas``, when one is registered.
    """
    now = now or datetime.now(UTC)
    skew = round(max_future_skew.total_seconds() * 1000)
    wall = round(now.timestamp() * 1000)
    out = Decoded()
    fast = mirror.decode
    registered = schemas if schemas else None  # most deployments register none
    for message in messages:
        value = message.value
        appended = message.timestamp
        if appended is not None and appended < 0:  # Kafka's "no timestamp" is -1
            appended = None
        latest = (wall if appended is None else round(appended * 1000)) + skew
        event = fast(value) if len(value) <= max_bytes else None
        result: Event | Rejection
        if event is None or event.at >= latest:
            result = validation.decode(
                value,
                now=now if appended is None else datetime.fromtimestamp(appended, UTC),
                max_bytes=max_bytes,
                max_future_skew=max_future_skew,
                clock="now (no Kafka timestamp)" if appended is None else "its Kafka timestamp",
                schemas=registered,
            )
        elif registered is not None and type(event) is mirror.CustomEvent:
            result = validation.conforming(event, registered)
        else:
            result = event
        if isinstance(result, Rejection):
            out.dead_letters.append(DeadLetter.of(message, result, now))
            out.rejected[result.reason] += 1
            continue
        event = result
        key = message.key.decode("utf-8", "backslashreplace") if message.key else ""
        out.items.append(Item(message, event, f"{message.topic}:{message.partition}:{key}"))
        out.consumed[(message.topic, event.type)] += 1
    return out


def quarantined(message: Message, exc: BaseException, event_id: str | None) -> DeadLetter:
    """The dead letter of a message whose processing raised ``exc`` (the quarantine)."""
    return DeadLetter.of(message, validation.crashed(exc, event_id))
