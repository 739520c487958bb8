"""Dead letters: a rejected message, why it was rejected, and where it came from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from cdpulse.contract.message import Message
from cdpulse.contract.validation import Rejection
from cdpulse.privacy.redact import redact

RAW_LIMIT = 4096  # characters of the raw payload kept; enough to debug, bounded in size


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The document published to the dead-letter topic."""

    reason: str
    detail: str
    event_id: str | None
    topic: str
    partition: int
    offset: int
    key: str | None
    received_at: str
    raw: str
    raw_bytes: int

    @classmethod
    def of(cls, message: Message, rejection: Rejection, now: datetime | None = None) -> DeadLetter:
        now = now or datetime.now(UTC)
        return cls(
            reason=rejection.reason,
            detail=rejection.detail,
            event_id=rejection.event_id,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key.decode("utf-8", "backslashreplace") if message.key else None,
            received_at=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            # Redacted: the reason needs the payload's shape, not the customer's email.
            raw=redact(message.value[:RAW_LIMIT].decode("utf-8", "backslashreplace"))[:RAW_LIMIT],
            raw_bytes=len(message.value),
        )

    def to_json(self) -> bytes:
        # ASCII escapes: a dead letter must be writable whatever the input held (lone
        # surrogates included), and stays readable JSON.
        return json.dumps(asdict(self)).encode("ascii")
