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
installed, with the garbage collector off while it runs. It speaks just enough HTTP/1.1
itself (keep-alive connections, one request in flight on each, Content-Length bodies):
aiohttp's client cost ~130 µs of CPU per request, so two generators at 1,000 requests/s
took over a quarter of this 2-core machine from the engine they measure. A request that
finds every connection busy waits for one, and that wait is in its latency (from due).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cdpulse.bench.stats import percentiles

LATE = 0.005  # a request sent this long after it was due counts as a missed send
TICK = 0.001  # the shortest pause between two bursts of requests
TIMEOUT = 10.0  # seconds a request may take before it counts as failed
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


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


class _Request:
    """One GET: its bytes, when it was due and when it went out."""

    __slots__ = ("due", "raw", "sent")

    def __init__(self, raw: bytes, due: float) -> None:
        self.raw, self.due, self.sent = raw, due, 0.0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight (no
    pipelining: a request never waits behind another one's answer on the wire)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: _Request | None = None
        self.status = ""
        self.length = -1  # bytes of the whole response, once its head is read
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.pool.ready(self)

    def send(self, request: _Request) -> None:
        assert self.transport is not None
        self.current = request
        request.sent = time.perf_counter()
        self.transport.write(request.raw)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while self.current is not None:
            if self.length < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end])
                found = _CONTENT_LENGTH.search(head)
                if found is None:  # only Content-Length bodies are read here
                    self.fail("unreadable response")
                    return
                self.status = head[9:12].decode("ascii", "replace")
                self.length = end + 4 + int(found.group(1))
            if len(buffer) < self.length:
                return
            del buffer[: self.length]
            self.length = -1
            request, self.current = self.current, None
            self.pool.answered(self, request, self.status)

    def fail(self, why: str) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.failed(self, why)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("ConnectionLost")


class _Pool:
    """``size`` connections and the requests waiting for a free one, in order."""

    def __init__(self, host: str, port: int, size: int, result: LoadResult) -> None:
        self.host, self.port, self.size = host, port, size
        self.result = result
        self.waiting: deque[_Request] = deque()
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.open = 0
        self.unanswered = 0
        self.settled = asyncio.Event()
        self.reconnecting: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs

    async def connect(self, again: bool = False) -> None:
        """Open connections up to ``size``; ``again``: replacing lost ones, where a server
        that refuses fails the requests waiting (none would be sent) and is tried again."""
        loop = asyncio.get_running_loop()
        while self.open < self.size:
            self.open += 1
            try:
                transport, _ = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
            except OSError as exc:
                self.open -= 1
                if not again:
                    raise
                if not (self.idle or self.busy):
                    while self.waiting:
                        self._record(self.waiting.popleft(), type(exc).__name__)
                await asyncio.sleep(0.2)
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def submit(self, request: _Request) -> None:
        self.unanswered += 1
        self.settled.clear()
        self.waiting.append(request)
        self._dispatch()

    def ready(self, connection: _Connection) -> None:
        self.idle.append(connection)
        self._dispatch()

    def answered(self, connection: _Connection, request: _Request, status: str) -> None:
        self._record(request, status)
        self.busy.discard(connection)
        self.ready(connection)

    def failed(self, connection: _Connection, why: str) -> None:
        """A connection closed or was closed: its request (if any) failed; a new one
        takes its place."""
        if connection in self.idle:
            self.idle.remove(connection)
        self.busy.discard(connection)
        request, connection.current = connection.current, None
        if request is not None:
            self._record(request, why)
        self.open -= 1
        task = asyncio.get_running_loop().create_task(self.connect(again=True))
        self.reconnecting.add(task)
        task.add_done_callback(self.reconnecting.discard)

    def expire(self, timeout: float) -> None:
        """Give up on requests in flight longer than ``timeout`` (their connection too)."""
        now = time.perf_counter()
        for connection in list(self.busy):
            request = connection.current
            if request is not None and now - request.sent > timeout:
                connection.current = None
                self._record(request, "TimeoutError")
                connection.fail("TimeoutError")

    def _dispatch(self) -> None:
        while self.waiting and self.idle:
            connection = self.idle.pop()
            self.busy.add(connection)
            connection.send(self.waiting.popleft())

    def _record(self, request: _Request, status: str) -> None:
        done = time.perf_counter()
        result = self.result
        result.statuses[status] += 1
        result.latencies.append(done - request.due)
        result.service.append(done - (request.sent or request.due))
        result.send_lag.append((request.sent or done) - request.due)
        self.unanswered -= 1
        if self.unanswered <= 0:
            self.settled.set()


async def _run(
    base_url: str, paths: Sequence[str], rate: float, duration: float, connections: int
) -> LoadResult:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for path in paths]
    total = int(rate * duration)
    clock = time.perf_counter
    pool = _Pool(host, port, connections, LoadResult(rate, 0.0))
    await pool.connect()

    async def timeouts() -> None:
        while True:
            await asyncio.sleep(0.5)
            pool.expire(TIMEOUT)

    expiry = asyncio.get_running_loop().create_task(timeouts())
    # Warm the connections so set-up is not in the first requests' latency.
    for i in range(min(connections, 20)):
        pool.submit(_Request(requests[i % len(requests)], clock()))
    await pool.settled.wait()
    result = pool.result = LoadResult(rate, 0.0)

    cpu = time.process_time()
    start = clock() + 0.01
    sent = 0
    while sent < total:
        # Everything due by now goes out at once, stamped with when it was due; then a
        # pause until the next is due, and at least a tick (a wake-up per request would
        # cost the generator more than the requests).
        due_now = min(total, int((clock() - start) * rate) + 1)
        for i in range(sent, due_now):
            pool.submit(_Request(requests[i % len(requests)], start + i / rate))
        sent = max(sent, due_now)
        await asyncio.sleep(max(TICK, start + sent / rate - clock()))
    await pool.settled.wait()
    result.seconds = clock() - start
    result.cpu_seconds = time.process_time() - cpu
    expiry.cancel()
    for connection in (*pool.idle, *pool.busy):
        if connection.transport is not None:
            connection.transport.close()
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
