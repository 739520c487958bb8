"""Is Kafka reachable? A metadata round trip with a short timeout."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaClient

PROBE_TIMEOUT = 3.0


class KafkaProbe:
    """A small client of its own, so a health check never waits behind the consumer."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._client: AIOKafkaClient | None = None

    async def reachable(self) -> bool:
        try:
            if self._client is None:
                client = AIOKafkaClient(bootstrap_servers=self.bootstrap.split(","))
                await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT)
                self._client = client
            await asyncio.wait_for(self._client.fetch_all_metadata(), PROBE_TIMEOUT)
        except Exception:  # unreachable, whatever the cause; the next probe reconnects
            if self._client is not None:
                await self._client.close()
                self._client = None
            return False
        return True
