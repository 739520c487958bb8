"""When aiokafka's group coordination needs a hand: the decisions, apart from aiokafka.

aiokafka keeps a consumer in its group with background tasks in the consumer thread's
loop: the client's metadata synchronizer, the coordination routine, its heartbeat. Some
ways they stop leave nothing in aiokafka or faust to start them again, and the consumer
then keeps its partitions while its commits time out and the broker drops it from the
group (:mod:`cdpulse.adapters.kafka.coordination_repair` names the paths, and repairs).
:class:`CoordinationWatch` decides, at each check, what the repair does; it reads
nothing itself, so that it can be tested on states alone.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


class Remedy(enum.Enum):
    """What the repair does to aiokafka's group coordination."""

    RESTART_METADATA = "start a new metadata synchronizer: the last one ended"
    RESTART_COORDINATION = "start a new coordination routine, rejoining: the last one ended"
    RELEASE_ERROR = "log the error the coordination routine waits for faust to read, rejoin"
    PROBE_COORDINATOR = "ask the broker which node coordinates the group"
    RESET_COORDINATION = "restart the metadata synchronizer and the coordination routine"


@dataclass(frozen=True, slots=True)
class CoordinationState:
    """aiokafka's group coordination as one check reads it."""

    metadata_ended: bool  # the client's metadata synchronizer task is done
    coordination_ended: bool  # the coordinator's coordination routine task is done
    error_unread: bool  # the coordination routine waits for the consumer to read an error
    coordinator_known: bool
    subscribed: bool  # before a subscription the routine looks up no coordinator


class CoordinationWatch:
    """Decides, check after check, what repairs aiokafka's group coordination.

    A task that ended is restarted at the first check that sees it: aiokafka never ends
    them while the consumer runs. Without a coordinator for ``stall_seconds``, the broker
    is asked which node coordinates the group (``PROBE_COORDINATOR``, then
    :meth:`probed`): a broker that is down or names none is waited for, as aiokafka does
    (its lookup retries on its own). A broker that named one at the last check while the
    routine still has none means the routine is stuck, not waiting: reset, then another
    ``stall_seconds`` before the next probe.
    """

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.unknown_since: float | None = None
        self.named = False  # the last probe found a coordinator
        self.repairs: Counter[Remedy] = Counter()

    def check(self, state: CoordinationState) -> list[Remedy]:
        """The remedies for ``state``, in the order they must be applied."""
        ended = [
            remedy
            for stopped, remedy in (
                (state.metadata_ended, Remedy.RESTART_METADATA),
                (state.coordination_ended, Remedy.RESTART_COORDINATION),
                (state.error_unread, Remedy.RELEASE_ERROR),
            )
            if stopped
        ]
        if ended:
            # The stall clock runs on: these are likely why there is no coordinator.
            return self._repaired(ended)
        if state.coordinator_known or not state.subscribed:
            self.unknown_since, self.named = None, False
            return []
        now = self.clock()
        if self.unknown_since is None:
            self.unknown_since = now
        if now - self.unknown_since < self.stall_seconds:
            return []
        if self.named:
            self.unknown_since, self.named = now, False
            return self._repaired([Remedy.RESET_COORDINATION])
        return [Remedy.PROBE_COORDINATOR]

    def probed(self, found: bool) -> None:
        """The broker's answer to ``PROBE_COORDINATOR``: ``found`` when it named a node."""
        self.named = found

    def _repaired(self, remedies: list[Remedy]) -> list[Remedy]:
        self.repairs.update(remedies)
        return remedies
