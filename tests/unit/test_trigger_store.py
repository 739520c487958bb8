"""The trigger store's contract, run here on the in-memory store and in
``tests/integration/test_triggers.py`` on Redis."""

from __future__ import annotations

import asyncio
from typing import Protocol

from cdpulse.store.triggers import MemoryTriggerStore


class TriggerStore(Protocol):
    async def schedule(self, dues: dict[str, int]) -> None: ...
    async def due(self, until: int, limit: int) -> dict[str, int]: ...
    async def move(self, moves: dict[str, tuple[int, int | None]]) -> None: ...
    async def claim(self, fired: list[tuple[str, str]], ttl_seconds: int) -> set[str]: ...
    async def count(self, counts: dict[tuple[str, str], int]) -> None: ...
    async def counts(self, rule: str) -> dict[str, int]: ...


async def contract(store: TriggerStore) -> None:
    await store.schedule({"C-1": 100, "C-2": 200, "C-3": 300})
    assert await store.due(250, 10) == {"C-1": 100, "C-2": 200}
    assert await store.due(250, 1) == {"C-1": 100}
    # A batch on another worker moves C-1 after this expiry read it: its time stands.
    await store.schedule({"C-1": 120})
    await store.move({"C-1": (100, None), "C-2": (200, 900)})
    assert await store.due(1000, 10) == {"C-1": 120, "C-3": 300, "C-2": 900}
    await store.move({"C-1": (120, None)})
    assert await store.due(1000, 10) == {"C-3": 300, "C-2": 900}

    assert await store.claim([("C-1", "t1"), ("C-1", "t2")], 60) == {"t1", "t2"}
    assert await store.claim([("C-1", "t1"), ("C-2", "t3")], 60) == {"t3"}
    assert await store.claim([], 60) == set()

    await store.count({("cart", "treated"): 2, ("cart", "holdout_converted"): 1})
    await store.count({("cart", "treated"): 1})
    assert await store.counts("cart") == {
        "treated": 3,
        "treated_converted": 0,
        "holdout": 0,
        "holdout_converted": 1,
    }


def test_the_in_memory_trigger_store_keeps_the_contract() -> None:
    asyncio.run(contract(MemoryTriggerStore()))
