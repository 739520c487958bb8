"""An open-loop HTTP load generator: requests start on a fixed schedule, answered or not.

    python -m cdpulse.bench.http_load --url http://127.0.0.1:PORT --paths FILE.json
        --rate 1000 --seconds 20 --out FILE.json

Request ``i`` is due at ``start + i / rate`` and its latency is measured from that
moment, not from when it was actually sent, so a server (or a client) that falls
behind shows up in the percentiles instead of quietly lowering the rate (no
coordinated omission). How late the generator itself sent each request is kept
apart (``send_lag``), with its CPU: a generator that cannot keep its own schedule is
the bottleneck, and the result says so instead of blaming the server.

The bench runs it as a process of its own, one per endpoint, on uvloop when it is
installed, with the garbage collector off while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cdpulse.bench.stats import percentiles

LATE = 0.005  # a request sent this long after it was due counts as a missed send


@dataclass
class LoadResult:
    """Latencies (seconds) and outcomes of one load run."""

    rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)  # from when each request was due
    service: list[float] = field(default_factory=list)  # from when each request was sent
    send_lag: list[float] = field(default_factory=list)  # sent minus due
    statuses: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0


def summarize_load(result: LoadResult) -> dict[str, Any]:
    """The figures of a load run: latency from due and from sent, the generator's own lag."""
    out: dict[str, Any] = {
        "rate": result.rate,
        "seconds": result.seconds,
        "requests": len(result.latencies),
        "achieved_rate": result.achieved_rate,
        "statuses": dict(result.statuses),
        "generator_cpu_utilisation": (
            result.cpu_seconds / result.seconds if result.seconds > 0 else None
        ),
    }
    if result.latencies:
        out["latency"] = {**percentiles(result.latencies), "max": max(result.latencies)}
        out["service"] = {**percentiles(result.service), "max": max(result.service)}
        out["send_lag"] = {
            **percentiles(result.send_lag, (0.5, 0.99)),
            "max": max(result.send_lag),
            "late": sum(1 for lag in result.send_lag if lag > LATE),
        }
    return out


async def _run(
    base_url: str, paths: Sequence[str], rate: float, duration: float, connections: int
) -> LoadResult:
    total = int(rate * duration)
    result = LoadResult(rate, 0.0)
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    clock = time.perf_counter
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def one(path: str, due: float) -> None:
            sent = clock()
            try:
                async with session.get(path) as response:
                    await response.read()
                    result.statuses[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.statuses[type(exc).__name__] += 1
            done = clock()
            result.latencies.append(done - due)
            result.service.append(done - sent)
            result.send_lag.append(sent - due)

        # Warm the pool so connection set-up is not in the first requests' latency.
        warm = min(connections, 20)
        await asyncio.gather(*(one(paths[i % len(paths)], clock()) for i in range(warm)))
        result = LoadResult(rate, 0.0)

        tasks: list[asyncio.Task[None]] = []
        cpu = time.process_time()
        start = clock() + 0.01
        sent = 0
        while sent < total:
            # Everything due by now goes out at once, stamped with when it was due.
            due_now = min(total, int((clock() - start) * rate) + 1)
            for i in range(sent, due_now):
                tasks.append(asyncio.create_task(one(paths[i % len(paths)], start + i / rate)))
            sent = max(sent, due_now)
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
        await asyncio.gather(*tasks)
        result.seconds = clock() - start
        result.cpu_seconds = time.process_time() - cpu
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
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # the engine depends on it; a bare install may not
        runner = asyncio.run
    result: LoadResult = runner(_run(base_url, paths, rate, duration, connections))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpulse.bench.http_load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--paths", type=Path, required=True, help="a JSON list of paths")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = json.loads(args.paths.read_text())
    # A full collection stops the loop for tens of ms: every request due meanwhile would
    # be sent late. What one run allocates fits in memory.
    gc.disable()
    result = run_load(args.url, paths, args.rate, args.seconds, args.connections)
    args.out.write_text(json.dumps(summarize_load(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
