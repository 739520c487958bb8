"""Segment sizes per event-time day, counted by the api from the segments topic.

Every entry to and exit from a segment is published to ``cdp.segments`` with the event
time of the change that caused it (``segments/membership.py``); a segment's size at the
end of a day is its entries minus its exits up to that day. The topic is read from its
beginning, incrementally (at most ``PER_READ`` records a read), in no consumer group. A
transition published twice (a worker that crashed between publishing and committing) has
the same ``transition_id`` and is counted once: the ids seen are kept as 64-bit digests
(8 bytes each in a set, far less than the strings).

The sizes are exact when the topic still holds its whole history: ``complete`` says
whether it does (every partition still starts at offset 0 and nothing is left to read).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer

from cdpulse.app.input_health import tail

PER_READ = 200_000


class SegmentHistory:
    """The transitions counted so far, by segment and day."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self.topic = topic
        self.options = options
        self._consumer: KafkaConsumer | None = None
        self.seen: set[int] = set()
        self.deltas: dict[str, dict[int, int]] = defaultdict(dict)  # segment -> day -> net
        self.pending = 0
        self.unreadable = 0

    def read(self) -> None:
        """Count what was published since the last read (blocking: run in a thread)."""
        if self._consumer is None:
            self._consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **self.options)
        self.pending = tail(self._consumer, self.topic, PER_READ, self._count)

    def _count(self, raw: bytes | None) -> None:
        try:
            transition = json.loads(raw or b"")
            ident = str(transition["transition_id"])
            segment = str(transition["segment"])
            step = 1 if transition["change"] == "entered" else -1
            day = int(datetime.fromisoformat(str(transition["at"])).timestamp() // 86_400)
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        digest = int.from_bytes(hashlib.blake2b(ident.encode(), digest_size=8).digest(), "big")
        if digest in self.seen:
            return
        self.seen.add(digest)
        days = self.deltas[segment]
        days[day] = days.get(day, 0) + step

    def complete(self) -> bool:
        """Whether every transition ever published has been counted."""
        if self._consumer is None or self.pending:
            return False
        assigned = list(self._consumer.assignment())
        starts = self._consumer.beginning_offsets(assigned) if assigned else {}
        return all(int(offset) == 0 for offset in starts.values())

    def sizes(self, names: list[str], days: list[int]) -> dict[str, list[int]]:
        """Each segment's size at the end of each of ``days`` (ascending epoch days)."""
        out = {}
        for name in names:
            deltas = self.deltas.get(name, {})
            size = sum(n for day, n in deltas.items() if day < days[0]) if days else 0
            row = []
            for day in days:
                size += deltas.get(day, 0)
                row.append(size)
            out[name] = row
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
