"""Leaders: the best few members of a score map whose scores only grow, kept as it changes.

Forward-decayed counts (see ``state``) only ever increase, so a map's top ``size`` can
change in one way only: a member outside it overtakes the weakest inside it, the
*floor*. The leaders sit in a min-heap of (score, member) with the floor on top. An
increment of a leader leaves its heap entry stale (too low); a stale floor is refreshed
when it is looked at. So an increment costs a comparison, and now and then a heap
operation over ``size`` entries, instead of a sort of the whole map on every read.
Reads that want more than ``size`` members sort the map (``best``).

One order everywhere: the higher score first, on a tie the larger id first (the order of
(score, id) tuples, so a heap and a sort need no key).

>>> scores = {"a": 1.0, "b": 3.0}
>>> top = Leaders(2)
>>> for member, score in scores.items():
...     top.offer(scores, member, score)
>>> scores["c"] = 2.0; top.offer(scores, "c", 2.0)
>>> top.ranked(scores), top.total
([('b', 3.0), ('c', 2.0)], 5.0)
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from mypy_extensions import mypyc_attr


def best(scores: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """The ``n`` best (member, score) of ``scores``, best first."""
    pairs = [(score, member) for member, score in scores.items()]
    ranked = sorted(pairs, reverse=True) if n >= len(pairs) else heapq.nlargest(n, pairs)
    return [(member, score) for score, member in ranked]


# Pickled in recommender snapshots: an ordinary class when compiled (``setup.py``), so
# its pickles are the same in either build.
@mypyc_attr(native_class=False)
class Leaders:
    """The top ``size`` members of a score map (held by the caller, passed to each call).

    ``members`` is a dict used as an ordered set: its order, unlike a set's, is the same
    in every process for the same increments, so samples drawn from it are too.
    """

    __slots__ = ("heap", "members", "size", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self.members: dict[str, None] = {}
        self.heap: list[tuple[float, str]] = []  # (score when pushed, member), floor first
        self.total = 0.0  # the leaders' scores summed

    def offer(self, scores: Mapping[str, float], member: str, amount: float) -> None:
        """``member``'s score in ``scores`` grew by ``amount`` (or it is new): update."""
        members = self.members
        if member in members:
            # its heap entry is stale now: refreshed when it surfaces as the floor
            self.total += amount
            return
        score = scores[member]
        heap = self.heap
        if len(members) < self.size:
            members[member] = None
            heapq.heappush(heap, (score, member))
            self.total += score
            return
        floor_score, floor = heap[0]
        while floor_score != scores[floor]:
            heapq.heapreplace(heap, (scores[floor], floor))
            floor_score, floor = heap[0]
        if (score, member) > (floor_score, floor):
            del members[floor]
            members[member] = None
            heapq.heapreplace(heap, (score, member))
            self.total += score - floor_score

    def ranked(self, scores: Mapping[str, float]) -> list[tuple[str, float]]:
        """The leaders with their scores, best first."""
        return best({m: scores[m] for m in self.members}, self.size)

    def rebuild(self, scores: Mapping[str, float]) -> None:
        """Recompute from ``scores`` (after they were all scaled)."""
        top = best(scores, self.size)
        self.total = sum(score for _, score in top)
        self.members = dict.fromkeys(m for m, _ in top)
        self.heap = [(score, m) for m, score in top]
        heapq.heapify(self.heap)
