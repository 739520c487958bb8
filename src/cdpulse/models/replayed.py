"""The events an offline evaluation replays: valid by the contract, of known customers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cdpulse.contract.mirror import Event
from cdpulse.contract.validation import Rejection, validate

# Replayed history is never "in the future" of the replay.
REPLAY_NOW = datetime(9000, 1, 1, tzinfo=UTC)


def customer_events(
    events: Iterable[Mapping[str, Any]], progress: Callable[[int], None] | None = None
) -> list[Event]:
    """The events of ``events`` the contract accepts that carry a ``customer_id``, in order."""
    kept = []
    for raw in events:
        if progress is not None:
            progress(1)
        event = validate(dict(raw), now=REPLAY_NOW)
        if not isinstance(event, Rejection) and event.customer_id is not None:
            kept.append(event)
    return kept
