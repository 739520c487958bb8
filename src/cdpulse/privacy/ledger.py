"""The erasure ledger: which ids were erased, so that replaying old events cannot bring
a customer back.

It holds pseudonyms (``Pseudonymizer.of_id``), never the ids: the ledger itself must
not be a list of the people who asked to be forgotten. An erased id stays erased: its
later events are dropped and counted, and a returning customer gets a new id.
"""

from __future__ import annotations

from typing import Protocol

from cdpulse.privacy.pseudonyms import Pseudonymizer


class Ledger(Protocol):
    """Remembers erased ids."""

    async def erased(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` that were erased."""
        ...

    async def record(self, ids: list[str], at: int) -> None:
        """Remember ``ids`` as erased at ``at`` (epoch ms)."""
        ...


class MemoryLedger:
    """The ledger in a dict: for unit tests and in-process replays."""

    def __init__(self, pseudonyms: Pseudonymizer) -> None:
        self.pseudonyms = pseudonyms
        self.entries: dict[str, int] = {}

    async def erased(self, ids: list[str]) -> set[str]:
        return {i for i in ids if self.pseudonyms.of_id(i) in self.entries}

    async def record(self, ids: list[str], at: int) -> None:
        for profile_id in ids:
            self.entries.setdefault(self.pseudonyms.of_id(profile_id), at)
