"""Drift in Redis: each learner's monitors, and each model's newest report.

A learner saves the monitor of every model (and shard) it learns every
``CDPULSE_DRIFT_SECONDS``; one learner at a time (a lock) merges every unit's monitor of a
model into its report, which the api puts on the model's card. Monitors and reports are
MessagePack and JSON read by msgspec into their types, never pickles: nothing here runs
code when it is read.
"""

from __future__ import annotations

import logging

import msgspec

from cdpulse.connections import AsyncRedis
from cdpulse.models.drift import DriftMonitor, DriftReport
from cdpulse.store.keys import Keys
from cdpulse.store.redis import get_many

log = logging.getLogger(__name__)

_REPORT = msgspec.json.Decoder(DriftReport)


class RedisDriftStore:
    """Drift monitors and reports under one prefix."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def save(self, model: str, unit: int, monitor: DriftMonitor) -> None:
        await self.client.set(self.keys.drift_monitor(model, unit), monitor.to_bytes())
        await self.client.sadd(self.keys.drift_units(model), str(unit))

    async def load(self, model: str, unit: int) -> DriftMonitor | None:
        raw = await self.client.get(self.keys.drift_monitor(model, unit))
        return _monitor(raw, model, unit)

    async def monitors(self, model: str) -> list[DriftMonitor]:
        """Every unit's saved monitor of ``model``."""
        units = sorted(int(u) for u in await self.client.smembers(self.keys.drift_units(model)))
        if not units:
            return []
        found = await get_many(self.client, [self.keys.drift_monitor(model, u) for u in units])
        monitors = [_monitor(raw, model, u) for u, raw in zip(units, found, strict=True)]
        return [m for m in monitors if m is not None]

    async def publish(self, model: str, report: DriftReport) -> None:
        await self.client.set(self.keys.drift_report(model), msgspec.json.encode(report))

    async def reports(self, models: list[str]) -> dict[str, DriftReport]:
        """The newest report of each of ``models`` that has one."""
        found = await get_many(self.client, [self.keys.drift_report(m) for m in models])
        out = {}
        for model, raw in zip(models, found, strict=True):
            if raw is None:
                continue
            try:
                out[model] = _REPORT.decode(raw)
            except msgspec.DecodeError:
                log.error("the drift report of %s does not read; the next replaces it", model)
        return out

    async def lock(self, seconds: int) -> bool:
        """One report per interval across learners: held until it expires."""
        return bool(await self.client.set(self.keys.drift_lock, b"1", nx=True, ex=seconds))


def _monitor(raw: bytes | str | None, model: str, unit: int) -> DriftMonitor | None:
    if not isinstance(raw, bytes):
        return None
    try:
        return DriftMonitor.from_bytes(raw)
    except (msgspec.DecodeError, ValueError, TypeError):
        # A monitor from another version, or bytes someone else wrote: start afresh.
        log.error("the drift monitor of %s unit %s does not read; starting a new one", model, unit)
        return None
