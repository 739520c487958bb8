"""The dedupe window: which event ids a profile applied, by event-time day.

A client that re-sends an event (an offline mobile queue, a retried import) repeats its
``event_id``. A repeat is dropped whenever the first copy's event-time day is at most
``days`` days before the newest event day of the first copy's source, however many
events came between; so it is caught for at least ``days`` x 24 h, at most a day more.
Older first copies are forgotten: a repeat of one is applied again (at least once
beyond the window).

Why per source (the message's "topic:partition:key"): a repeat has its first copy's
content, so it travels on the same topic, key and partition, where messages arrive in
offset order. The profile as a whole does not: its topics are read at their own pace,
and after a restart one may run days of event time ahead of another (a chaos test with
killed workers caught it: a profile's newest day, taken over all its topics, had pruned
the day of a clickstream event whose repeat the lagging clickstream partition had not
delivered yet). A source's own newest day never runs ahead of its own repeats.

Why exact hashes and not a filter: a Bloom or cuckoo filter answers "seen" for ids it
never saw, and an exact engine must not silently drop a real event. An 8-byte BLAKE2b
hash of the id is exact enough: with 10,000 ids kept, a new id collides with one of
them with probability ~5e-16 (one wrong drop in ~2e15 events).

Why packed bytes per day: ``days -> b"h1h2h3..."`` (8 bytes per id) is one MessagePack
``bin`` per day, so decoding a profile makes one Python object per day, not one per id
(the profile is decoded and encoded once per batch it appears in). Membership is
``bytes.find`` (C speed) with an alignment check; pruning drops whole days. The day is
the day number (epoch ms // day): 3 bytes in MessagePack where epoch ms takes 9.

The window is judged against its sources' newest days, never the wall clock, so live
processing and ``cdpulse rebuild`` agree; and not against ``last_seen``, which a profile
withholding analytics resets (``rules.minimise``) while its window must stay.

Memory is bounded by ``cap`` ids per profile: beyond it the oldest days are dropped
first (and the oldest ids of the newest day, if it alone holds more), and the ids so
dropped are returned for the caller to count: a repeat of one would be applied again.

>>> window: Window = {}
>>> key = hashed("e-1")
>>> add(window, key, 3 * DAY, days=7, cap=100, source=1), holds(window, key)
(0, True)
>>> add(window, hashed("e-2"), 11 * DAY, days=7, cap=100, source=2), holds(window, key)
(0, True)
>>> add(window, hashed("e-3"), 11 * DAY, days=7, cap=100, source=1), holds(window, key)
(0, False)
"""

from __future__ import annotations

import zlib
from hashlib import blake2b

from cdpulse.profile.windows import DAY

ID_BYTES = 8

# source (``source_of``) -> event-time day -> that day's 8-byte keys, packed
Window = dict[int, dict[int, bytes]]


_last: tuple[str, bytes] = ("", b"")


def hashed(event_id: str) -> bytes:
    """The 8-byte key the window keeps for ``event_id``.

    The last one is remembered: every applied event is hashed twice in a row, once to
    ask ``holds`` and once to ``add`` it (the same string object both times).
    """
    global _last
    last = _last
    if last[0] is event_id:
        return last[1]
    key = blake2b(event_id.encode(), digest_size=ID_BYTES).digest()
    _last = (event_id, key)
    return key


def source_of(source: str | None) -> int:
    """The window's key for a message source ("topic:partition:key"; 0 when unknown)."""
    return zlib.crc32(source.encode()) if source else 0


def holds(window: Window, key: bytes) -> bool:
    """Whether ``key`` is in the window (any source, any day: a re-sent id may carry
    another time)."""
    # One search over every day's keys joined (each a whole number of keys, so a key
    # still starts at a multiple of ID_BYTES), not one search per day and source.
    packed = b"".join([p for days in window.values() for p in days.values()])
    at = packed.find(key)
    # A match straddling two keys is not the key: look further.
    while at >= 0:
        if at % ID_BYTES == 0:
            return True
        at = packed.find(key, at + 1)
    return False


def add(window: Window, key: bytes, t: int, days: int, cap: int, source: int = 0) -> int:
    """Keep ``key`` of an event at ``t`` (epoch ms) from ``source``; the ids the cap
    dropped.

    An event older than its source's window is not kept: a later repeat of it could not
    be judged either way by its first copy's day.
    """
    day = t // DAY
    mine = window.get(source)
    if mine is None:
        mine = window[source] = {}
    newest = max(mine, default=day)
    if day < newest - days:
        return 0
    mine[day] = mine.get(day, b"") + key
    if day > newest:
        prune(mine, day - days)
    return enforce_cap(window, cap)


def merge(window: Window, other: Window, days: int, cap: int) -> int:
    """Union ``other`` into ``window``, exactly; the ids the cap dropped."""
    for source, theirs in other.items():
        mine = window.setdefault(source, {})
        for day, packed in theirs.items():
            mine[day] = mine.get(day, b"") + packed
        if mine:
            prune(mine, max(mine) - days)
    return enforce_cap(window, cap)


def prune(days: dict[int, bytes], oldest: int) -> None:
    """Drop the days before ``oldest`` (of one source)."""
    for day in [d for d in days if d < oldest]:
        del days[day]


def size(window: Window) -> int:
    """How many ids the window keeps."""
    total = 0
    for days in window.values():
        for packed in days.values():
            total += len(packed)
    return total // ID_BYTES


def enforce_cap(window: Window, cap: int) -> int:
    """Drop the oldest ids (by day, any source) until at most ``cap`` are kept; how many
    were dropped."""
    excess = size(window) - cap
    if excess <= 0:
        return 0
    dropped = excess
    for day, source in sorted((d, s) for s, days in window.items() for d in days):
        days = window[source]
        count = len(days[day]) // ID_BYTES
        if count <= excess:
            del days[day]
            if not days:
                del window[source]
            excess -= count
        else:
            days[day] = days[day][excess * ID_BYTES :]
            break
    return dropped
