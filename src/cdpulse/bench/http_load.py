"""An open-loop HTTP load generator: requests start on a fixed schedule, answered or not.

Request ``i`` is due at ``start + i / rate`` and its latency is measured from that
moment, not from when it was actually sent, so a server (or a client) that falls
behind shows up in the percentiles instead of quietly lowering the rate
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    """Latencies (seconds) and outcomes of one load run."""

    rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)  # from when each request was due
    service: list[float] = field(default_factory=list)  # from when each request was sent
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0


async def _run(
    base_url: str, paths: Sequence[str], rate: float, duration: float, connections: int
) -> LoadResult:
    total = int(rate * duration)
    result = LoadResult(rate, 0.0)
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def one(path: str, due: float) -> None:
            sent = time.perf_counter()
            try:
                async with session.get(path) as response:
                    await response.read()
                    result.statuses[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.statuses[type(exc).__name__] += 1
            done = time.perf_counter()
            result.latencies.append(done - due)
            result.service.append(done - sent)

        # Warm the pool so connection set-up is not in the first requests' latency.
        warm = min(connections, 20)
        await asyncio.gather(
            *(one(paths[i % len(paths)], time.perf_counter()) for i in range(warm))
        )
        result.latencies.clear()
        result.service.clear()
        result.statuses.clear()

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.01
        sent = 0
        while sent < total:
            # Everything due by now goes out at once, stamped with when it was due.
            due_now = min(total, int((time.perf_counter() - start) * rate) + 1)
            for i in range(sent, due_now):
                tasks.append(asyncio.create_task(one(paths[i % len(paths)], start + i / rate)))
            sent = max(sent, due_now)
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
    return result


def run_load(
    base_url: str,
    paths: Sequence[str],
    rate: float,
    duration: float,
    connections: int = 64,
) -> LoadResult:
    """GET ``paths`` round-robin at ``rate`` per second for ``duration`` seconds."""
    if not paths:
        raise ValueError("no paths to request")
    return asyncio.run(_run(base_url, paths, rate, duration, connections))
