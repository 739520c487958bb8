"""The newest fairness report in Redis: the learner publishes, ``GET /v1/fairness`` reads.

JSON read by msgspec into its type, never a pickle.
"""

from __future__ import annotations

import msgspec

from cdpulse.connections import AsyncRedis
from cdpulse.models.fairness import FairnessReport
from cdpulse.store.keys import Keys

_REPORT = msgspec.json.Decoder(FairnessReport)


class RedisFairnessStore:
    """The fairness report under one prefix."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def publish(self, report: FairnessReport) -> None:
        await self.client.set(self.keys.fairness_report, msgspec.json.encode(report))

    async def load(self) -> FairnessReport | None:
        """The newest report; None before the first, or when it does not read (the next
        one replaces it)."""
        raw = await self.client.get(self.keys.fairness_report)
        if not isinstance(raw, bytes):
            return None
        try:
            return _REPORT.decode(raw)
        except msgspec.DecodeError:
            return None

    async def lock(self, seconds: int) -> bool:
        """One report per interval across learners: held until it expires."""
        return bool(await self.client.set(self.keys.fairness_lock, b"1", nx=True, ex=seconds))
