"""What one partition may commit: the offset after its oldest message not yet handled.

A partition's messages are recorded in delivery order as they are handed to streams,
and each is marked ``committable`` when its final ack is recorded. The commit offset
is one past the longest run of committable messages at the head::

    >>> ledger = PartitionOffsets()
    >>> a, b, c = Delivered(7), Delivered(8), Delivered(11)  # 9-10: compacted away
    >>> [m.offset for m in ledger.deliver([a, b, c])]
    [7, 8, 11]
    >>> b.committable = c.committable = True
    >>> ledger.advance() is None  # 7 is still being handled: nothing past it commits
    True
    >>> a.committable = True
    >>> ledger.advance()
    12

Offsets that never reached a stream (compacted, transaction markers) need no gap
bookkeeping: they are not in the ledger, so the run simply steps over them. A message
marked acked without its ack being recorded (``_committed_only_if_handled`` in the
worker) stays not committable forever: it holds back every later commit of that
partition until the partition is revoked or the worker stops, and its next owner
reads it again. That hole also keeps the later messages of the partition in memory
until then; the worker only leaves one when it is stopping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Committable(Protocol):
    """A delivered message as the ledger sees it."""

    offset: int
    committable: bool


M = TypeVar("M", bound=Committable)


@dataclass(slots=True)
class Delivered:
    """A stand-in for a consumer message, for examples and tests."""

    offset: int
    committable: bool = False


class PartitionOffsets:
    """The delivered, not yet committable messages of one partition, oldest first.

    Invariant: offsets in the ledger increase from head to tail, each is a message
    delivered once since the last rewind, and the head, when there is one, is not
    committable once :meth:`advance` has run.
    """

    __slots__ = ("_pending", "last", "ready")

    def __init__(self) -> None:
        self._pending: deque[Committable] = deque()
        #: The newest offset delivered, or None before the first (or after a rewind to it).
        self.last: int | None = None
        #: One past the newest message of the committable run, or None before the first.
        self.ready: int | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def deliver(self, messages: Sequence[M]) -> Sequence[M]:
        """Record the messages newer than every one delivered before, and return them.

        Older ones were delivered already (a fetch overlapping the last one): handing
        them to a stream again would let a duplicate's ack stand for the original.

        >>> ledger = PartitionOffsets()
        >>> _ = ledger.deliver([Delivered(1), Delivered(2)])
        >>> [m.offset for m in ledger.deliver([Delivered(2), Delivered(3)])]
        [3]
        """
        last = self.last
        if last is not None and messages and messages[0].offset <= last:
            messages = [m for m in messages if m.offset > last]
        if messages:
            self._pending.extend(messages)
            self.last = messages[-1].offset
        return messages

    def advance(self) -> int | None:
        """Drop the committable run at the head; returns :attr:`ready` when it moved."""
        pending = self._pending
        last = None
        while pending and pending[0].committable:
            last = pending.popleft()
        if last is None:
            return None
        self.ready = last.offset + 1
        return self.ready

    def rewind(self, offset: int) -> None:
        """Forget messages at ``offset`` and after: the consumer will read them again.

        >>> ledger = PartitionOffsets()
        >>> _ = ledger.deliver([Delivered(1), Delivered(2), Delivered(3)])
        >>> ledger.rewind(2)
        >>> len(ledger), ledger.last
        (1, 1)
        """
        pending = self._pending
        while pending and pending[-1].offset >= offset:
            pending.pop()
        if self.last is not None and self.last >= offset:
            self.last = offset - 1
        if self.ready is not None and self.ready > offset:
            self.ready = None
