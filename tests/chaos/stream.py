"""The streams the fault tests send: a simulated shop with broken messages mixed in.

``Sender`` produces them from a background thread at a steady rate, so that faults land
mid-stream, and records where Kafka put every message, so a test can check each one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from cdpulse.connections import kafka_options
from cdpulse.contract.topics import Topics
from cdpulse.kafka_admin import ensure_topics
from cdpulse.settings import Settings
from cdpulse.simulate.malformed import malformed_event
from cdpulse.simulate.shop import Shop
from tests.oracle import Truth, expected


@dataclass
class Outgoing:
    """One message to send: a valid event (``reason`` None) or a broken one."""

    stream: str  # "clickstream", "transactions" or "customers"
    key: bytes | None
    value: bytes
    reason: str | None = None  # the dead-letter reason the worker must give
    partition: int = -1  # where Kafka put it, once sent
    offset: int = -1

    def topic(self, topics: Topics) -> str:
        return str(getattr(topics, self.stream))


def shop_stream(
    customers: int,
    days: int,
    seed: int,
    broken: float = 0.005,
    repeated: float = 0.0,
    padding: int = 0,
) -> list[Outgoing]:
    """A seeded shop's events in time order, with a share of broken and repeated ones.

    ``padding`` adds that many bytes to each event in a field the contract drops: the
    same profiles from a heavier stream.
    """
    from cdpulse.contract.topics import STREAM_OF_TYPE

    rng = random.Random(seed)
    out: list[Outgoing] = []
    for event in Shop(customers=customers, days=days, seed=seed).events():
        if padding:
            event["padding"] = "p" * padding
        stream = STREAM_OF_TYPE[event["type"]]
        key = (event.get("customer_id") or event["anonymous_id"]).encode()
        out.append(Outgoing(stream, key, json.dumps(event).encode()))
        if rng.random() < broken:
            raw, reason = malformed_event(rng, event)
            out.append(Outgoing(stream, key, raw, reason))
        if rng.random() < repeated:  # a client retry: the same event_id again
            out.append(Outgoing(stream, key, json.dumps(event).encode()))
    return out


def truth_of(messages: list[Outgoing]) -> Truth:
    """What the oracle expects from these messages, in the order they were sent."""
    return expected([m.value for m in messages], now=datetime.now(UTC))


class Sender(threading.Thread):
    """Sends messages at ``rate`` per second (0: as fast as possible) from a thread."""

    def __init__(
        self,
        settings: Settings,
        messages: list[Outgoing],
        rate: float = 0,
        holds: Sequence[int] = (),
    ) -> None:
        """``holds``: after that many messages sent, wait for :meth:`release`; a test changes
        the workers there and lets the stream go on, however long the change took."""
        super().__init__(daemon=True, name="chaos-sender")
        self.settings = settings
        self.messages = messages
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self.holds = sorted(holds)
        self._holding = False
        self._released = threading.Event()
        self._free = False

    def run(self) -> None:
        try:
            self._send()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def _send(self) -> None:
        topics = Topics.from_settings(self.settings)
        futures: list[Any] = []
        started = time.monotonic()
        ensure_topics(self.settings)
        # As ``cdpulse.producer`` sends (acks=all, idempotent), but a record may wait for
        # the broker as long as a test keeps it down: on a loaded machine a broker
        # restart and the backlog before it took longer than the default two minutes,
        # and the test failed on the sender's expired records, not on the engine.
        producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            batch_size=256 * 1024,
            delivery_timeout_ms=900_000,
            **kafka_options(self.settings),
        )
        try:
            for message in self.messages:
                if self.holds and self.sent == self.holds[0]:
                    self.holds.pop(0)
                    self._wait_for_release()
                    started = time.monotonic() - (self.sent / self.rate if self.rate else 0)
                futures.append(
                    producer.send(message.topic(topics), value=message.value, key=message.key)
                )
                self.sent += 1
                if self.rate > 0:
                    ahead = self.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            for message, future in zip(self.messages, futures, strict=True):
                metadata = future.get(timeout=900)
                message.partition, message.offset = metadata.partition, metadata.offset
        finally:
            producer.close()

    def _wait_for_release(self) -> None:
        if self._free:
            return
        self._holding = True
        self._released.wait()
        self._released.clear()
        self._holding = False

    @property
    def held(self) -> bool:
        """Waiting at one of ``holds`` for :meth:`release`."""
        return self._holding

    def release(self) -> None:
        """Let the stream go on from the hold it waits at."""
        self._released.set()

    @property
    def share_sent(self) -> float:
        return self.sent / max(1, len(self.messages))

    def finish(self, timeout: float = 600) -> list[Outgoing]:
        """Wait until every message is acknowledged by Kafka; the messages, placed."""
        self._free = True  # no more holds
        self._released.set()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"sending did not finish in {timeout:.0f}s ({self.sent} sent)")
        if self.error is not None:
            raise AssertionError(f"sending failed after {self.sent} messages") from self.error
        return self.messages
