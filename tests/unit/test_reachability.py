"""``/healthz`` answers from the last round of probes, not from probes of its own: a slow
dependency makes the answer late by nothing, and a round never runs a probe twice at once
(``ops/health.py``). The probes here are coroutines under the test's control."""

from __future__ import annotations

import asyncio

from cdpulse.ops.health import Reachability


class Gate:
    """A probe that answers ``up`` when released, counting calls and overlaps."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> bool:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            return self.up
        finally:
            self.running -= 1


def test_the_first_answer_waits_for_a_round_and_later_ones_do_not() -> None:
    async def main() -> None:
        redis, kafka = Gate(), Gate(up=False)
        reach = Reachability({"redis": redis, "kafka": kafka}, interval=60, timeout=5)
        assert await reach.current() == {"redis": True, "kafka": False}
        assert (redis.calls, kafka.calls) == (1, 1)
        kafka.up = True
        kafka.release.clear()  # a probe that would now hang
        answer = await asyncio.wait_for(reach.current(), 0.5)
        assert answer == {"redis": True, "kafka": False}  # the last round's, at once
        assert kafka.calls == 1  # no probe of its own

    asyncio.run(main())


def test_run_keeps_the_answers_fresh() -> None:
    async def main() -> None:
        kafka = Gate()
        reach = Reachability({"kafka": kafka}, interval=0.01, timeout=5)
        task = asyncio.create_task(reach.run())
        assert await reach.current() == {"kafka": True}
        kafka.up = False
        for _ in range(200):
            await asyncio.sleep(0.01)
            if (await reach.current())["kafka"] is False:
                break
        assert await reach.current() == {"kafka": False}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_probe_that_hangs_or_raises_answers_unreachable_and_others_still_answer() -> None:
    async def broken() -> bool:
        raise ConnectionError("refused")

    async def main() -> None:
        hanging = Gate()
        hanging.release.clear()
        reach = Reachability({"hang": hanging, "broken": broken, "up": Gate()}, timeout=0.05)
        assert await reach.current() == {"hang": False, "broken": False, "up": True}

    asyncio.run(main())


def test_rounds_never_overlap() -> None:
    async def main() -> None:
        kafka = Gate()
        kafka.release.clear()
        reach = Reachability({"kafka": kafka}, interval=60, timeout=5)
        rounds = [asyncio.create_task(reach.round()) for _ in range(3)]
        waiting = asyncio.create_task(reach.current())
        # wait on the condition, not on a clock: a loaded machine may take longer than any
        # sleep to start the first probe; then give every other task many turns to overlap
        async with asyncio.timeout(5):
            while kafka.calls == 0:
                await asyncio.sleep(0)
        for _ in range(100):
            await asyncio.sleep(0)
        assert kafka.calls == 1 and kafka.most_at_once == 1
        kafka.release.set()
        answers = await asyncio.gather(*rounds, waiting)
        assert answers == [{"kafka": True}] * 4
        assert kafka.calls == 1  # the others took the answer of the round under way

    asyncio.run(main())


def test_a_stale_answer_is_probed_again() -> None:
    async def main() -> None:
        kafka = Gate()
        reach = Reachability({"kafka": kafka}, interval=0.01, timeout=0.01)
        await reach.current()
        await asyncio.sleep(0.05)  # no ``run``: the last round is older than both
        kafka.up = False
        assert await reach.current() == {"kafka": False}
        assert kafka.calls == 2

    asyncio.run(main())
