"""Triggers inside the profile pipeline, over the simulated shop, against the oracle.

The shop's events reach the pipeline as a consumer would see them (three topics, four
partitions each, interleaved with up to an hour of lag, cut into batches of any size);
each batch decides what the low watermark has passed. Whatever the arrival order, every
situation must be decided exactly once, as the oracle decides it; a worker dying between
publishing and writing publishes firings again (at least once, with the same id), and
the uplift counters still count each once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdpulse.pipeline.batch import ProfilePipeline, Sharding
from cdpulse.pipeline.memory import MemoryOutlet, MemoryState
from cdpulse.pipeline.outputs import Stream
from cdpulse.pipeline.stages import Engine, Models, Stages
from cdpulse.pipeline.state import Changes, SaveStatus
from cdpulse.profile.rules import Rules
from cdpulse.simulate import Shop
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.rules import TriggerConfig
from tests import trigger_oracle
from tests.unit.test_pipeline import (
    PARTITIONS,
    Record,
    arrival_order,
    cut,
    encode,
    partition_of,
)

HOLDOUT = trigger_oracle.HOLDOUT
CONFIG = TriggerConfig.model_validate(trigger_oracle.RULES)


class Crash(Exception):
    """The worker died between publishing a batch's records and writing them."""


class CrashingState(MemoryState):
    """Fails some writes, as a dying worker would: its batch is delivered again."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        super().__init__(shard_of=partition_of)
        self.rng, self.rate = rng, rate

    async def write(self, changes: Changes) -> dict[str, SaveStatus]:
        if self.rng.random() < self.rate:
            raise Crash
        return await super().write(changes)


@dataclass
class Replay:
    decisions: list[Decision] = field(default_factory=list)  # as saved
    published: list[str] = field(default_factory=list)  # trigger ids sent
    state: MemoryState = field(default_factory=MemoryState)
    watermark: int = 0


async def replay(records: list[Record], seed: int, crash_rate: float = 0.0) -> Replay:
    rng = random.Random(seed)
    state = CrashingState(rng, crash_rate)
    outlet = MemoryOutlet()
    engine = Engine(Rules(), Models(), triggers=CONFIG)
    pipeline = ProfilePipeline(
        state,
        outlet,
        Stages(engine),
        partitions=3 * PARTITIONS,
        sharding=Sharding(lambda: tuple(range(PARTITIONS)), partition_of),
        due_limit=rng.randint(5, 50),
    )
    out = Replay(state=state)
    # The last, empty batches: the idle worker deciding what the final watermark passed.
    for batch in [*cut(arrival_order(records, rng), rng, 300), [], [], []]:
        while True:  # a batch whose worker died is delivered again
            try:
                report = await pipeline.run(batch)
                break
            except Crash:
                continue
        out.decisions += report.work.decisions
    out.published = [json.loads(v)["trigger_id"] for v in outlet.values(Stream.TRIGGERS)]
    out.watermark = pipeline.low_watermark
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


def test_a_worker_dying_between_publishing_and_writing_loses_no_firing_and_counts_once() -> None:
    run = asyncio.run(replay(RECORDS, 3, crash_rate=0.3))
    truth = expected(EVENTS, run.watermark)
    fired = {i for i, (outcome, *_) in truth.items() if outcome == "fired"}
    assert set(run.published) == fired  # at least once each, nothing else
    assert len(run.published) > len(fired), "no firing was published twice: no crash tested"
    # the uplift counters count each exposure once, however often it was published
    treated = Counter(i.split(":", 1)[0] for i, (o, *_) in truth.items() if o == "fired")
    for rule, n in treated.items():
        assert run.state.counters[(f"uplift:{rule}", "treated")] == n
