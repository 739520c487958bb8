"""The profile store interface the batch processor is written against.

Exactness does not depend on there being one writer: every save is a compare-and-set
on the profile's version, refused when the id has meanwhile been linked (aliased) to
a customer. The batch processor retries refused saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from cdpulse.profile.model import Profile


class SaveStatus(Enum):
    """Outcome of one compare-and-set save."""

    SAVED = "saved"
    CONFLICT = "conflict"  # the version moved: someone else wrote; re-read and re-apply
    ALIASED = "aliased"  # the id now belongs to a customer: re-resolve and re-apply


@dataclass(frozen=True, slots=True)
class Stored:
    """A profile as read, with the version a save must match (0: not stored yet)."""

    version: int
    profile: Profile | None


@dataclass(frozen=True, slots=True)
class Write:
    """One compare-and-set write."""

    profile: Profile
    expected_version: int


class ProfileStore(Protocol):
    """Profiles, aliases and the event-time watermark."""

    async def load(self, ids: list[str]) -> dict[str, Stored]:
        """Read many profiles in one round trip."""
        ...

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        """The customer each id is linked to; ids without an alias map to themselves."""
        ...

    async def link(self, anonymous_id: str, customer_id: str) -> str:
        """Link an anonymous id to a customer; returns the customer it is linked to.

        The first link wins: an id already linked to another customer stays there.
        """
        ...

    async def save(self, writes: list[Write]) -> dict[str, SaveStatus]:
        """Compare-and-set many profiles in one round trip."""
        ...

    async def retire(self, ids: list[str]) -> None:
        """Delete the profiles of anonymous ids that were merged into a customer."""
        ...

    async def advance_watermark(self, marks: dict[str, int]) -> None:
        """Raise the per-partition event-time watermarks (epoch ms)."""
        ...

    async def watermark(self) -> int:
        """The newest event time seen on any partition (epoch ms); 0 when none."""
        ...

    async def low_watermark(self, partitions: int) -> int:
        """The oldest of the per-partition watermarks: every partition has passed it.

        0 until all ``partitions`` input partitions have reported one: a partition not
        heard from yet may still hold any event time.
        """
        ...

    async def schedule(self, dues: dict[str, int]) -> None:
        """Remember when each profile's waiting churn snapshot expires (epoch ms)."""
        ...

    async def due(self, until: int, limit: int) -> list[str]:
        """Profiles whose scheduled expiry is at or before ``until``."""
        ...

    async def unschedule(self, ids: list[str]) -> None:
        """Forget the schedules of ``ids``."""
        ...

    async def get(self, profile_id: str) -> Profile | None:
        """One profile, following an alias."""
        ...

    async def count(self) -> int:
        """How many profiles are stored."""
        ...
