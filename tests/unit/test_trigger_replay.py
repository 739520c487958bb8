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

import pytest

from cdpulse.ingest.batch import BatchProcessor
from cdpulse.profile.rules import Rules
from cdpulse.simulate import Shop
from cdpulse.store.memory import MemoryProfileStore
from cdpulse.store.triggers import MemoryTriggerStore
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.rules import TriggerConfig
from tests import trigger_oracle
from tests.unit.test_batch_processor import PARTITIONS, Record, arrival_order, cut, encode

HOLDOUT = 0.25
CONFIG = TriggerConfig.model_validate(
    {
        "caps": {"per_day": 1000, "per_week": 1000},
        "rules": [
            {
                "name": "cart_abandoned",
                "kind": "cart_abandoned",
                "cooldown_hours": 0,
                "holdout": HOLDOUT,
            },
            {"name": "high_intent", "kind": "high_intent", "cooldown_hours": 0, "holdout": HOLDOUT},
            {"name": "cross_sell", "kind": "cross_sell", "cooldown_hours": 0, "holdout": HOLDOUT},
        ],
    }
)


async def replay(records: list[Record], seed: int) -> tuple[list[Decision], int]:
    rng = random.Random(seed)
    store = MemoryProfileStore()
    engine = TriggerEngine(CONFIG, MemoryTriggerStore(), session_gap=Rules().session_gap)
    processor = BatchProcessor(store, Rules(), partitions=3 * PARTITIONS, triggers=engine)
    decisions: list[Decision] = []
    for batch in cut(arrival_order(records, rng), rng, 300):
        await processor.process(batch)
        expired = await engine.expire(
            store, await processor.low_watermark(), limit=rng.randint(1, 50)
        )
        decisions += expired.decisions
    return decisions, await processor.low_watermark()


@pytest.mark.parametrize("seed", [1, 2])
def test_every_situation_is_decided_once_as_the_oracle_decides_it(seed: int) -> None:
    events = list(Shop(customers=300, days=8, seed=11).events())
    decisions, watermark = asyncio.run(replay([Record(e, encode(e)) for e in events], seed))

    consent = trigger_oracle.marketing_consent(events)
    expected = {
        s.trigger_id: (trigger_oracle.outcome(s, consent, HOLDOUT), s.at, s.products)
        for s in trigger_oracle.situations(events)
        if s.at <= watermark
    }
    ids = Counter(d.trigger_id for d in decisions)
    assert [i for i, n in ids.items() if n > 1] == []
    got = {d.trigger_id: (d.outcome, d.pending.at, tuple(d.pending.products)) for d in decisions}
    assert got == expected
    outcomes = Counter((d.pending.rule, d.outcome) for d in decisions)
    for rule in ("cart_abandoned", "high_intent", "cross_sell"):
        assert outcomes[(rule, "fired")] > 0 and outcomes[(rule, "no_consent")] > 0, outcomes
