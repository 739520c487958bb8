"""The two ports of the batch pipeline: the state store and the outlet.

The pipeline is written against these protocols only; Redis and Kafka implement them in
``store/`` and ``app/``, dicts and lists in ``pipeline.memory`` (unit tests and
``cdpulse evaluate``), so the same stages run everywhere.
"""

from __future__ import annotations

from typing import Protocol

from cdpulse.pipeline.outputs import Outputs
from cdpulse.pipeline.state import Changes, SaveStatus, View, Wanted


class StateStore(Protocol):
    """Profiles and everything kept beside them."""

    async def read(self, wanted: Wanted) -> View:
        """Everything ``wanted`` asks for, in one round trip."""
        ...

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        """Every save (compare-and-set, atomic per profile) and the rest, in one round
        trip; the status of each save by profile id."""
        ...

    def discard(self) -> None:
        """The batch failed after its read: forget anything kept from it (profiles it may
        have changed in place)."""
        ...


class Outlet(Protocol):
    """Where a batch's records go: they are sent and acknowledged when this returns."""

    async def publish(self, outputs: Outputs) -> None: ...
