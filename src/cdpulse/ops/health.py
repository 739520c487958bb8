"""Is Kafka reachable, is Redis? Probed in the background, answered at once.

A health check that probes on request answers only as fast as the slowest dependency:
a broker that takes two seconds for a metadata round trip (freshly started, or busy)
made ``/healthz`` take up to its probe timeouts added up, longer than an orchestrator's
probe waits, and a live process looked dead. So each dependency is probed on an
interval, all at once, each with a timeout, and a check answers from the last round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

PROBE_TIMEOUT = 3.0  # seconds for each step of a probe
PROBE_INTERVAL = 1.0  # seconds between rounds; a change shows within this + the timeout


class KafkaProbe:
    """A small client of its own, so a health check never waits behind the consumer.

    Each probe asks a broker for the metadata of no topic: the brokers only. Asking for
    every topic's (``fetch_all_metadata``) took a worker 4-5 % of its CPU on the bench's
    broker (702 topics, decoded in pure Python once a second), and a shared production
    cluster holds many more.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._client: AIOKafkaClient | None = None

    async def reachable(self) -> bool:
        """Whether a metadata round trip comes back (bootstrapping first if need be)."""
        try:
            if self._client is None:
                self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap.split(","))
                await asyncio.wait_for(self._client.bootstrap(), PROBE_TIMEOUT)
            await asyncio.wait_for(self._brokers(self._client), PROBE_TIMEOUT)
        except BaseException as exc:  # unreachable, whatever the cause: reconnect next time
            if self._client is not None:
                client, self._client = self._client, None
                await client.close()
            if not isinstance(exc, Exception):
                raise  # cancelled: closed, and the cancellation goes on
            return False
        return True

    @staticmethod
    async def _brokers(client: AIOKafkaClient) -> None:
        """One metadata round trip to a known broker, naming no topic (an empty list, not
        None: None asks for all of them)."""
        node = client.get_random_node()
        if node is None:
            raise KafkaConnectionError("no broker known")
        answer = await client.send(node, MetadataRequest([]))
        if not answer.brokers:
            raise KafkaConnectionError("the broker named no broker")


Probe = Callable[[], Awaitable[bool]]


class Reachability:
    """The last answer of each probe, kept fresh by ``run`` (a task of the role's app).

    ``current()`` answers at once from the last round, unless none ended within
    ``interval + timeout`` seconds (a process just started, or one whose ``run`` has not
    begun yet): then it waits for a round of its own. Rounds never overlap, so a probe keeping a
    connection (``KafkaProbe``) is never run twice at once. A probe that raises or
    outlasts ``timeout`` answered "unreachable".
    """

    def __init__(
        self,
        probes: Mapping[str, Probe],
        interval: float = PROBE_INTERVAL,
        timeout: float = 2 * PROBE_TIMEOUT,  # Kafka's takes two steps when it reconnects
    ) -> None:
        self.probes = dict(probes)
        self.interval = interval
        self.timeout = timeout
        self.last: dict[str, bool] = {}
        self.ended: float | None = None  # when the last round ended (monotonic)
        self._lock = asyncio.Lock()

    async def current(self) -> dict[str, bool]:
        """Each probe's last answer, by name."""
        if self.ended is None or time.monotonic() - self.ended > self.interval + self.timeout:
            await self.round()
        return dict(self.last)

    async def run(self) -> None:
        """A round every ``interval`` seconds, until cancelled."""
        while True:
            await self.round()
            await asyncio.sleep(self.interval)

    async def round(self) -> dict[str, bool]:
        """Every probe once, all at the same time; or the answers of the round under way."""
        if self._lock.locked():
            async with self._lock:
                return dict(self.last)
        async with self._lock:
            names = list(self.probes)
            answers = await asyncio.gather(*(self._one(self.probes[n]) for n in names))
            self.last = dict(zip(names, answers, strict=True))
            self.ended = time.monotonic()
            return dict(self.last)

    async def _one(self, probe: Probe) -> bool:
        try:
            return bool(await asyncio.wait_for(probe(), self.timeout))
        except Exception:  # any failure means unreachable, whatever its type
            return False
