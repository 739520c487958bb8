"""Custom event counts: per name, all time and in the profile's rolling windows, capped.

A profile counts each custom event name it keeps (``Profile.custom_counts``): its events
of all time and per window bucket, the buckets kept and read as ``windows.py`` keeps and
reads the profile's own (at most the widest window of each granularity: 30 days of day
buckets, not the 60 the churn trend reads).

Names come from senders, so a profile keeps a bounded set: every name with a registered
schema (the operator's set, ``contract/custom_schemas.py``) and, of the others, the
``kept`` first in alphabetical order. The first in an order of the names themselves,
not of their arrival, so that the kept set is a function of the set of events: the
alphabetically ``kept``-th name only falls as names arrive, a name it passes never
returns, and a name kept at the end was kept from its first event on, so its counts are
exact. ``merge`` (the union, then the same cut) stays exact for the same reason. A
hostile sender can crowd out only unregistered names, and only in the profiles it
writes to.

>>> from cdpulse.profile.model import Profile
>>> p = Profile(id="C-1", last_seen=3_600_000)
>>> for name in ("video_played", "wishlist_added", "video_played", "banner_closed"):
...     count(p, name, 3_600_000, registered=frozenset({"wishlist_added"}), kept=1)
>>> sorted(p.custom_counts), read(p.custom_counts["wishlist_added"], 3_600_000)
(['banner_closed', 'wishlist_added'], {'total': 1, '1h': 1, '24h': 1, '7d': 1, '30d': 1})
"""

from __future__ import annotations

from cdpulse.profile import limits, windows
from cdpulse.profile.limits import Dropped
from cdpulse.profile.model import CustomCount, Profile
from cdpulse.profile.windows import GRANULARITIES, WINDOWS

# Per granularity, how far back a bucket can still be read: the widest window using it.
_KEEP: dict[int, int] = {
    g: max(w.width for w in WINDOWS if w.granularity == g) for g in GRANULARITIES
}


def count(
    profile: Profile,
    name: str,
    t: int,
    *,
    registered: frozenset[str],
    kept: int,
    dropped: Dropped | None = None,
) -> None:
    """Count one event of custom event ``name`` at ``t`` (when the cap keeps the name)."""
    tally = profile.custom_counts.get(name)
    if tally is None:
        if name not in registered and not _admit(profile, name, registered, kept, dropped):
            return
        tally = profile.custom_counts[name] = CustomCount()
    tally.total += 1
    for g in GRANULARITIES:
        cells = tally.buckets.setdefault(g, {})
        start = (t // g) * g
        cells[start] = cells.get(start, 0) + 1
    prune(tally, profile.last_seen)


def _admit(
    profile: Profile, name: str, registered: frozenset[str], kept: int, dropped: Dropped | None
) -> bool:
    """Whether an unregistered ``name`` new to the profile is kept; makes room for it by
    dropping the alphabetically last unregistered name when it comes before that one."""
    others = [n for n in profile.custom_counts if n not in registered]
    if len(others) < kept:
        return True
    last = max(others)
    if dropped is not None:
        dropped[limits.counted(limits.CUSTOM_NAMES)] += 1
    if name > last:
        return False
    del profile.custom_counts[last]
    return True


def prune(tally: CustomCount, last_seen: int) -> None:
    """Drop the buckets of ``tally`` no window can read any more at ``last_seen``."""
    for g, cells in tally.buckets.items():
        oldest = (last_seen // g) * g - _KEEP[g] + g
        if cells and min(cells) < oldest:
            for start in [s for s in cells if s < oldest]:
                del cells[start]


def prune_all(profile: Profile) -> None:
    """``prune`` every name's buckets at the profile's ``last_seen``."""
    for tally in profile.custom_counts.values():
        prune(tally, profile.last_seen)


def merge(
    profile: Profile,
    other: Profile,
    *,
    registered: frozenset[str],
    kept: int,
    dropped: Dropped | None = None,
) -> None:
    """Add ``other``'s custom counts to ``profile``'s, then keep what ``count`` keeps."""
    for name, theirs in other.custom_counts.items():
        mine = profile.custom_counts.setdefault(name, CustomCount())
        mine.total += theirs.total
        for g, cells in theirs.buckets.items():
            target = mine.buckets.setdefault(g, {})
            for start, n in cells.items():
                target[start] = target.get(start, 0) + n
    others = sorted(n for n in profile.custom_counts if n not in registered)
    for name in others[kept:]:
        del profile.custom_counts[name]
    if dropped is not None and len(others) > kept:
        dropped[limits.counted(limits.CUSTOM_NAMES)] += len(others) - kept
    prune_all(profile)


def read(tally: CustomCount | None, as_of: int) -> dict[str, int]:
    """A name's events of all time (``total``) and per window at ``as_of``."""
    out = {"total": 0 if tally is None else tally.total}
    for window in WINDOWS:
        n = 0
        if tally is not None:
            lo = windows.first_bucket(window, as_of)
            for start, events in tally.buckets.get(window.granularity, {}).items():
                if lo <= start <= as_of:
                    n += events
        out[window.name] = n
    return out


def view(profile: Profile, as_of: int, registered: frozenset[str]) -> dict[str, dict[str, int]]:
    """Every name counted, and every registered one (zeros when never sent), by name."""
    names = sorted(set(profile.custom_counts) | registered)
    return {name: read(profile.custom_counts.get(name), as_of) for name in names}
