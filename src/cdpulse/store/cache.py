"""The profiles a worker wrote last, kept decoded: most of a batch's customers were in the
batches just before it (a visit is a burst of events), and reading and decoding a profile
costs more than applying an event to it.

The cache never decides what is true; Redis does. An entry is the version the worker
wrote and the profile as written. The batch's one read asks Redis for the stored version
of each cached profile (``read.lua``), and only a profile someone else wrote since
(another worker during a rebalance, the learner's RFM sweep, an erasure, an expiry)
travels and is decoded again; the others start from the entry. Its save is still a
compare-and-set on that version, for a writer that comes between the read and the
write. So the cache saves the bytes and the decoding, never serves a stale profile into
a write.

The stages change profiles in place, so an entry lent to a batch is taken out of the
cache until the batch wrote it back; a batch that fails clears the cache.
"""

from __future__ import annotations

from collections import OrderedDict

from cdpulse.pipeline.state import Stored


class ProfileCache:
    """At most ``capacity`` profiles, the least recently written dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self.hits = self.misses = 0

    def lend(self, profile_id: str) -> Stored | None:
        """The entry for ``profile_id``, taken out until ``put`` brings it back."""
        entry = self._entries.pop(profile_id, None)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def is_staged(self, profile_id: str) -> bool:
        """Whether the entry kept for ``profile_id`` is a save not written yet."""
        entry = self._entries.get(profile_id)
        return entry is not None and entry.staged

    def put(self, profile_id: str, entry: Stored) -> None:
        """``entry`` was written (its version is the one in Redis now)."""
        if self.capacity <= 0:
            return
        self._entries[profile_id] = entry
        self._entries.move_to_end(profile_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, profile_id: str) -> None:
        self._entries.pop(profile_id, None)

    def drop_if(self, profile_id: str, entry: Stored) -> None:
        """Drop ``entry`` if it is still the one kept for ``profile_id``."""
        if self._entries.get(profile_id) is entry:
            del self._entries[profile_id]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
