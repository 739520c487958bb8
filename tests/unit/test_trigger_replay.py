"""The trigger engine inside the batch processor, over the simulated shop, against the oracle.

The shop's events reach the processor as a consumer would see them (three topics, four
partitions each, interleaved with up to an hour of lag, cut into batches of any size);
after every batch the engine decides what the low watermark has passed. Whatever the
arrival order, every situation must be decided exactly once, as the oracle decides it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdpulse.ingest.batch import BatchProcessor
from cdpulse.profile.rules import Rules
from cdpulse.simulate import Shop
from cdpulse.store.base import SaveStatus, Write
from cdpulse.store.memory import MemoryProfileStore
from cdpulse.store.triggers import MemoryTriggerStore
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.engine import Expired, TriggerEngine
from cdpulse.triggers.rules import TriggerConfig
from tests import trigger_oracle
from tests.unit.test_batch_processor import PARTITIONS, Record, arrival_order, cut, encode

HOLDOUT = trigger_oracle.HOLDOUT
CONFIG = TriggerConfig.model_validate(trigger_oracle.RULES)


class Crash(Exception):
    """The worker died between publishing a round's firings and saving its decisions."""


class CrashingStore(MemoryProfileStore):
    """Fails some saves while watches are being decided, as a dying worker would."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        super().__init__()
        self.rng, self.rate, self.deciding = rng, rate, False

    async def save(self, writes: list[Write]) -> dict[str, SaveStatus]:
        if self.deciding and self.rng.random() < self.rate:
            raise Crash
        return await super().save(writes)


@dataclass
class Replay:
    decisions: list[Decision] = field(default_factory=list)  # as saved
    published: list[str] = field(default_factory=list)  # trigger ids sent
    watermark: int = 0


async def replay(records: list[Record], seed: int, crash_rate: float = 0.0) -> Replay:
    rng = random.Random(seed)
    store = CrashingStore(rng, crash_rate)
    triggers = MemoryTriggerStore()
    engine = TriggerEngine(CONFIG, triggers, session_gap=Rules().session_gap)
    processor = BatchProcessor(store, Rules(), partitions=3 * PARTITIONS, triggers=engine)
    out = Replay()

    async def publish(expired: Expired) -> None:
        fired = [(d.customer_id, d.trigger_id) for d in expired.decisions if d.outcome == "fired"]
        out.published += sorted(await triggers.claim(fired, 60))

    for batch in cut(arrival_order(records, rng), rng, 300):
        await processor.process(batch)
        low = await processor.low_watermark()
        store.deciding = True
        while True:  # the worker retries the step until it goes through
            try:
                expired = await engine.expire(store, low, rng.randint(1, 50), publish)
                break
            except Crash:
                continue
        store.deciding = False
        out.decisions += expired.decisions
    out.watermark = await processor.low_watermark()
    return out


def expected(events: list[dict[str, Any]], watermark: int) -> dict[str, Any]:
    consent = trigger_oracle.marketing_consent(events)
    return {
        s.trigger_id: (trigger_oracle.outcome(s, consent, HOLDOUT), s.at, s.products)
        for s in trigger_oracle.situations(events)
        if s.at <= watermark
    }


EVENTS = list(Shop(customers=300, days=8, seed=11).events())
RECORDS = [Record(e, encode(e)) for e in EVENTS]


@pytest.mark.parametrize("seed", [1, 2])
def test_every_situation_is_decided_once_as_the_oracle_decides_it(seed: int) -> None:
    run = asyncio.run(replay(RECORDS, seed))
    ids = Counter(d.trigger_id for d in run.decisions)
    assert [i for i, n in ids.items() if n > 1] == []
    got = {
        d.trigger_id: (d.outcome, d.pending.at, tuple(d.pending.products)) for d in run.decisions
    }
    assert got == expected(EVENTS, run.watermark)
    outcomes = Counter((d.pending.rule, d.outcome) for d in run.decisions)
    for rule in ("cart_abandoned", "high_intent", "cross_sell"):
        assert outcomes[(rule, "fired")] > 0 and outcomes[(rule, "no_consent")] > 0, outcomes
    assert sorted(run.published) == sorted(i for i, d in got.items() if d[0] == "fired")


def test_a_worker_dying_between_publishing_and_saving_publishes_each_firing_once() -> None:
    run = asyncio.run(replay(RECORDS, 3, crash_rate=0.3))
    fired = sorted(
        i for i, (outcome, *_) in expected(EVENTS, run.watermark).items() if outcome == "fired"
    )
    assert sorted(run.published) == fired
