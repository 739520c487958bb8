"""A broker connection reset on uvloop: aiokafka's requests on it fail with a KafkaError.

For two loop iterations after a reset, aiokafka's connection still says it is connected
while uvloop has closed its transport, whose ``write`` then raises ``RuntimeError``
(``adapters/kafka/connection.py``). Before the fix, the metadata synchronizer's step that
met such a connection raised, and the synchronizer ended for good. The connection here
goes to the real broker through a proxy of the test's own, which resets it (SO_LINGER 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from cdpulse.adapters.kafka.connection import report_resets_as_kafka_errors
from tests.integration.conftest import KAFKA_PORT

BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"


class ResettingProxy:
    """Forwards 127.0.0.1:``port`` to the broker until ``reset`` resets its client sockets."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        # Each client socket, with the thread reading from it.
        self.clients: list[tuple[socket.socket, threading.Thread]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", KAFKA_PORT))
                reading = threading.Thread(target=self._pipe, args=(client, upstream), daemon=True)
                reading.start()
                threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
                self.clients.append((client, reading))

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)

    def reset(self) -> None:
        for client, reading in self.clients:
            # A close with linger 0 answers RST, as a killed broker does for what it had not
            # read; only once no thread is blocked reading the socket does close release it.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.shutdown(socket.SHUT_RD)
            reading.join(5)
            client.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(stack: None) -> Iterator[ResettingProxy]:
    proxy = ResettingProxy()
    try:
        yield proxy
    finally:
        proxy.close()


async def reset_while_connected(proxy: ResettingProxy, conn: Any) -> None:
    """Reset ``conn`` and return while aiokafka still takes it for connected."""
    proxy.reset()
    for _ in range(1000):
        if conn._reader is not None and conn._reader.exception() is not None:
            break
        await asyncio.sleep(0)
    assert conn.connected() and conn._writer.transport.is_closing(), "the reset was not seen"


def run_on_uvloop(scenario: Any) -> Any:
    report_resets_as_kafka_errors()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(scenario)


def test_a_request_on_a_reset_connection_fails_with_a_kafka_connection_error(
    proxy: ResettingProxy,
) -> None:
    async def scenario() -> None:
        conn = await create_conn("127.0.0.1", proxy.port)
        await reset_while_connected(proxy, conn)
        with pytest.raises(KafkaConnectionError):
            conn.send(MetadataRequest(None))
        assert not conn.connected(), "the broken connection must be closed, to be replaced"

    run_on_uvloop(scenario())


def test_the_metadata_synchronizer_s_step_survives_a_reset_connection(
    proxy: ResettingProxy,
) -> None:
    async def scenario() -> None:
        client = AIOKafkaClient(bootstrap_servers=BOOTSTRAP)
        await client.bootstrap()
        try:
            conn = await create_conn("127.0.0.1", proxy.port)
            # The client's connection to its broker is this one, through the proxy.
            client._conns[(client.get_random_node(), ConnectionGroup.DEFAULT)] = conn
            await reset_while_connected(proxy, conn)
            # What ``_md_synchronizer`` runs for each update: a failed update, not an
            # exception that would end the synchronizer.
            assert await client._metadata_update(client.cluster, set()) is False
            assert not client._sync_task.done()
            assert await asyncio.wait_for(client.force_metadata_update(), 30) is True
        finally:
            await client.close()

    run_on_uvloop(scenario())
