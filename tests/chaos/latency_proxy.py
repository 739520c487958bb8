"""A TCP proxy that adds latency, for a Redis that is slow to answer.

Every chunk of bytes is held for half the round-trip time in each direction, and chunks
keep their order, so pipelining still works: only the wire got longer. ``rtt`` can be
changed while connections are open; bytes already in flight keep their delay::

    proxy = LatencyProxy("127.0.0.1", 6379, rtt=0.03)
    proxy.start()              # listens on 127.0.0.1:proxy.port
    proxy.rtt = 0.0            # fast again
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class LatencyProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``upstream_port`` with ``rtt`` seconds added."""

    def __init__(self, host: str, upstream_port: int, rtt: float = 0.0) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.rtt = rtt
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_in, server_out = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_out.close()
            return
        # Ends quietly when the proxy stops: asyncio's stream callback would report the
        # cancellation as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(client_in, server_out), self._pipe(server_in, client_out)
            )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy ``source`` to ``sink``, each chunk delivered half a round trip later."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await source.read(65536)
                await queue.put((loop.time() + self.rtt / 2, chunk))
                if not chunk:  # end of stream: delivered last, then the sink is closed
                    break
            await delivering
        except (ConnectionError, asyncio.CancelledError):
            delivering.cancel()
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                sink.close()
