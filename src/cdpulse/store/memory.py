"""An in-memory ProfileStore: for unit tests and in-process replays."""

from __future__ import annotations

from cdpulse.profile.model import Profile, decode, encode
from cdpulse.store.base import SaveStatus, Stored, Write


class MemoryProfileStore:
    """Keeps encoded profiles in dicts, with the same semantics as the Redis store."""

    def __init__(self) -> None:
        self.profiles: dict[str, tuple[int, bytes]] = {}
        self.aliases: dict[str, str] = {}
        self.marks: dict[str, int] = {}
        self.dues: dict[str, int] = {}

    async def load(self, ids: list[str]) -> dict[str, Stored]:
        out: dict[str, Stored] = {}
        for profile_id in ids:
            version, blob = self.profiles.get(profile_id, (0, b""))
            out[profile_id] = Stored(version, decode(blob) if blob else None)
        return out

    async def resolve(self, ids: list[str]) -> dict[str, str]:
        return {i: self.aliases.get(i, i) for i in ids}

    async def link(self, anonymous_id: str, customer_id: str) -> str:
        return self.aliases.setdefault(anonymous_id, customer_id)

    async def save(self, writes: list[Write]) -> dict[str, SaveStatus]:
        out: dict[str, SaveStatus] = {}
        for write in writes:
            profile_id = write.profile.id
            version = self.profiles.get(profile_id, (0, b""))[0]
            if profile_id in self.aliases:
                out[profile_id] = SaveStatus.ALIASED
            elif version != write.expected_version:
                out[profile_id] = SaveStatus.CONFLICT
            else:
                self.profiles[profile_id] = (version + 1, encode(write.profile))
                out[profile_id] = SaveStatus.SAVED
        return out

    async def retire(self, ids: list[str]) -> None:
        for profile_id in ids:
            self.profiles.pop(profile_id, None)

    async def advance_watermark(self, marks: dict[str, int]) -> None:
        for partition, t in marks.items():
            self.marks[partition] = max(t, self.marks.get(partition, 0))

    async def watermark(self) -> int:
        return max(self.marks.values(), default=0)

    async def low_watermark(self, partitions: int) -> int:
        if len(self.marks) < partitions:
            return 0
        return min(self.marks.values(), default=0)

    async def schedule(self, dues: dict[str, int]) -> None:
        self.dues.update(dues)

    async def due(self, until: int, limit: int) -> list[str]:
        ready = sorted((t, i) for i, t in self.dues.items() if t <= until)
        return [i for _, i in ready[:limit]]

    async def unschedule(self, ids: list[str]) -> None:
        for profile_id in ids:
            self.dues.pop(profile_id, None)

    async def get(self, profile_id: str) -> Profile | None:
        target = self.aliases.get(profile_id, profile_id)
        return (await self.load([target]))[target].profile

    async def count(self) -> int:
        return len(self.profiles)
