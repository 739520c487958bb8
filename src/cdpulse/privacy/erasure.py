"""What an erasure removed: the audit record, without any personal data.

The erasing itself (every key of the customer and of the visitors linked to it) is the
store's: ``store/erasure.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure removed: the audit record, without any personal data."""

    subject: str  # the pseudonym of the erased customer
    ids: list[str] = field(repr=False)  # the erased ids, for tombstones: never published
    requested_by: str
    event_id: str
    requested_at: str
    erased_at: str
    removed: dict[str, int]

    def audit_json(self) -> bytes:
        """The audit record: who, when, what was removed; ids only as pseudonyms."""
        record = asdict(self)
        record["ids"] = len(self.ids)
        return json.dumps({"audit": "erasure", **record}, sort_keys=True).encode()


def iso(millis: int) -> str:
    """Epoch milliseconds as RFC 3339 text (UTC, milliseconds)."""
    text = datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
