"""aiokafka's broker connection, reporting a reset connection on uvloop as it does on asyncio.

aiokafka's ``AIOKafkaConnection.send`` (aiokafka 0.14.0, ``conn.py`` 408-444) turns an
``OSError`` from the transport's ``write`` into ``KafkaConnectionError``, which every
caller handles: a retry, another broker, a metadata refresh. uvloop raises
``RuntimeError`` instead ("unable to perform operation on <TCPTransport closed=True>; the
handler is closed") once a reset closed the transport. aiokafka notices a reset only two
loop iterations later, when its read task's done callback closes the connection; until
then ``connected()`` says True (the reader holds the error, not an end of file), and a
request sent on it raises ``RuntimeError`` out of every caller that catches
``KafkaError`` alone.

A SIGKILLed broker resets every connection it had not read to the end, and each closed
connection asks for a metadata update at once: the client's metadata synchronizer then
sends on a connection still in that window, ends for good (``client.py`` 248-271 catches
nothing around its loop), and the update every ``await force_metadata_update()`` waits for
is never resolved. Reproduced on a real broker with uvloop 0.23 and aiokafka 0.14.0; the
consequences, and the watch that repairs them whatever ended the synchronizer, are in
:mod:`cdpulse.adapters.kafka.coordination_repair`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError, KafkaError

# Marks a method already wrapped, so that installing twice wraps once.
_WRAPPED = "_cdpulse_reports_resets"


def _reporting_resets(send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def send_or_report(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return send(self, *args, **kwargs)
        except RuntimeError as exc:
            writer = self._writer
            # KafkaError is a RuntimeError: aiokafka's own errors pass as they are, and so
            # does a RuntimeError of a transport that is not closing (not a reset).
            if isinstance(exc, KafkaError) or writer is None or not writer.transport.is_closing():
                raise
            # What send does with an OSError from the same write.
            self.close(reason=CloseReason.CONNECTION_BROKEN, exc=exc)
            raise KafkaConnectionError(
                f"Connection at {self.host}:{self.port} broken: {exc}"
            ) from exc

    setattr(send_or_report, _WRAPPED, True)
    return send_or_report


def report_resets_as_kafka_errors() -> None:
    """Make every aiokafka connection of this process raise ``KafkaConnectionError`` for a
    request sent on a connection uvloop already closed (idempotent)."""
    for name in ("send", "_send_sasl_token"):
        method = getattr(AIOKafkaConnection, name)
        if not getattr(method, _WRAPPED, False):
            setattr(AIOKafkaConnection, name, _reporting_resets(method))
