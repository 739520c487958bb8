"""The garbage-collection keeper of the batching roles (``app.base.Heap``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from cdpulse.app.base import Heap


class Node:
    """Something that can be made into a reference cycle."""

    other: Node | None = None


@pytest.fixture
def heap_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.collect()


def cycle() -> weakref.ref[Node]:
    """Cyclic garbage: unreachable, freed only by the cyclic collector."""
    node = Node()
    node.other = node
    return weakref.ref(node)


def test_what_survives_a_batch_is_frozen_until_the_sweep(heap_state: None) -> None:
    heap = Heap(sweep_seconds=3600)
    assert gc.get_threshold()[0] == Heap.YOUNG
    garbage = cycle()
    heap.settle()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert garbage() is not None  # frozen: no collection traverses it
    heap.sweep()
    assert garbage() is None  # the sweep reclaims the cycles frozen since the last one


def test_a_batch_after_the_interval_sweeps(heap_state: None) -> None:
    heap = Heap(sweep_seconds=0.0)
    garbage = cycle()
    heap.settle()
    assert garbage() is None
