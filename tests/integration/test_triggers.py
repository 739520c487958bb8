"""Triggers live on the stream: the simulated shop through real processes, Kafka and Redis.

The expected firings come from ``tests.trigger_oracle``, computed from the same events;
the worker must publish every expected firing, none for customers without marketing
consent, and show the same counts in /metrics and the uplift endpoint. A worker killed
mid-stream and replaced must not change any of it, except that what it published but had
not saved is published again (at least once): the same firing, under the same id.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cdpulse.connections import async_redis
from cdpulse.contract.trigger import TriggerMessage
from cdpulse.offers.bandit import Reward
from cdpulse.pipeline.state import Changes, Save, SaveStatus
from cdpulse.producer import Producer
from cdpulse.profile.model import Profile
from cdpulse.simulate.shop import Shop
from cdpulse.store.keys import keys_for
from cdpulse.store.state import CLAIM_SECONDS, RedisState
from cdpulse.store.triggers import RedisTriggerStore
from tests import trigger_oracle
from tests.integration.conftest import (
    FAST_FAILOVER,
    Env,
    caught_up,
    consume_all,
    decided,
    drained,
    low_watermark,
    wait_until,
)
from tests.oracle import pseudonym_id

HOLDOUT = trigger_oracle.HOLDOUT
OFFERS = trigger_oracle.OFFERS
RULES = trigger_oracle.RULES
WINDOW = trigger_oracle.WINDOW
LATENESS = 60_000  # CDPULSE_TRIGGER_LATENESS_SECONDS by default


def first_of_each(
    records: list[Any], key: str, but: frozenset[str] = frozenset()
) -> dict[str, bytes]:
    """Each id's first record; a repeat must be the very same record (at least once),
    except for the fields ``but`` names."""
    first: dict[str, bytes] = {}
    for record in records:
        ident = json.loads(record.value)[key]
        if ident in first:
            again, was = json.loads(record.value), json.loads(first[ident])
            for name in but:
                again.pop(name, None)
                was.pop(name, None)
            assert again == was, f"{ident} published again, differently"
        first.setdefault(ident, record.value)
    return first


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "killed-mid-stream"])
def test_triggers_fire_once_per_situation_and_only_with_consent(
    env: Env, tmp_path: Path, kill: bool
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    # No RFM segments: their sweep (on the learner) would be a second writer of profiles,
    # and the worker's saves its writes refuse are computed and published again.
    # tests/integration/test_segments.py races the two; here the worker is the only one.
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    variables = {
        "CDPULSE_TRIGGER_RULES": str(rules),
        "CDPULSE_SEGMENTS_FILE": str(segments),
        **FAST_FAILOVER,
    }
    events = list(Shop(customers=400, days=10, seed=23).events())
    # The learner learns the offers' rewards and publishes the policies workers choose by.
    roles = env.roles(learner=True, **variables)
    worker, api, learner = roles.worker, roles.api, roles.learning
    half = len(events) // 2
    with Producer.from_settings(env.settings) as producer:
        for event in events[:half]:
            producer.send(event)
    if kill:
        # Killed while it works through the first half: what it decided but had not
        # committed is re-delivered to its successor, which publishes again only what
        # was published and not saved.
        wait_until(lambda: worker.metric("cdpulse_triggers_total") > 0, 300, "the first decisions")
        worker.kill()
        worker = env.worker(**variables)
    with Producer.from_settings(env.settings) as producer:
        for event in events[half:]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 600, "the worker to drain its topics")
    # What the last batch made due is decided by the next (idle) batch.
    wait_until(lambda: decided(env.settings), 120, "the worker to decide what became due")

    watermark = low_watermark(env.settings)
    assert watermark > 0, "every input partition has reported"
    consent = trigger_oracle.marketing_consent(events)
    outcomes = {
        s.trigger_id: (s, trigger_oracle.outcome(s, consent, HOLDOUT))
        for s in trigger_oracle.situations(events)
        if s.at + LATENESS <= watermark
    }
    expected = Counter((s.rule, outcome) for s, outcome in outcomes.values())
    fired = {i for i, (_, outcome) in outcomes.items() if outcome == "fired"}
    assert len(fired) >= 30, "the shop must give the test something to check"
    assert all(expected[(rule, "no_consent")] > 0 for rule in ("cart_abandoned", "cross_sell"))

    records = consume_all(env.settings, env.settings.topic_triggers, len(fired))
    messages = [TriggerMessage.model_validate_json(r.value) for r in records]
    sent = Counter(m.trigger_id for m in messages)
    # At least once: a consumer dedupes on trigger_id, so a repeat must be the same firing.
    # Decided again after a crash, its offer and recommendations come from the models
    # loaded then (the learner publishes new ones meanwhile; README: Triggers).
    first_of_each(
        records, "trigger_id", but=frozenset({"offer", "recommended"}) if kill else frozenset()
    )
    repeated = [i for i, n in sent.items() if n > 1]
    if not kill:
        assert worker.metric("cdpulse_save_retries_total") == 0, "the worker is the one writer"
        assert repeated == [], "a situation fired twice without a crash"
    assert set(sent) == fired
    assert [m.trigger_id for m in messages if not consent.get(m.customer_id, (0, False))[1]] == []
    assert {r.key.decode() for r in records} == {m.customer_id for m in messages}
    for message in messages:
        situation, _ = outcomes[message.trigger_id]
        assert message.rule == situation.rule and message.kind == situation.rule
        assert int(message.at.timestamp() * 1000) == situation.at
        assert tuple(message.products) == situation.products
        assert message.reasons and all(message.reasons)
        if message.rule == "cart_abandoned":
            assert message.offer is not None
            assert message.offer.offer_id in OFFERS
            assert 0 < message.offer.propensity <= 1
            assert message.offer.features["bias"] == 1.0
        else:
            assert message.offer is None

    # The uplift counters live in Redis and are claimed with the profile's save: exact
    # even across the kill. /metrics is per process: exact for a worker that saw the
    # whole stream.
    # Attribution windows closed by the watermark: converted when the customer ordered or
    # redeemed within them.
    bought = trigger_oracle.conversions(events)
    closed = {
        i: trigger_oracle.converted(s, bought, WINDOW)
        for i, (s, outcome) in outcomes.items()
        if outcome in ("fired", "holdout") and s.at + WINDOW + LATENESS <= watermark
    }
    assert closed and any(closed.values())
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for rule in ("cart_abandoned", "high_intent", "cross_sell"):
            report: dict[str, Any] = http.get(f"/v1/rules/{rule}/uplift").json()
            assert report["treated"]["exposed"] == expected[(rule, "fired")], report
            assert report["holdout"]["exposed"] == expected[(rule, "holdout")], report
            for group in ("fired", "holdout"):
                converted = sum(
                    c
                    for i, c in closed.items()
                    if outcomes[i][0].rule == rule and outcomes[i][1] == group
                )
                name = "treated" if group == "fired" else "holdout"
                assert report[name]["converted"] == converted, (rule, group, report)
            assert report["holdout_share"] == HOLDOUT
        # the newest firings: older ones may be forgotten once no cap or cooldown needs them
        for message in sorted(messages, key=lambda m: m.at)[-5:]:
            watch = http.get(f"/v1/profiles/{message.customer_id}/triggers").json()
            at = message.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert {"rule": message.rule, "at": at} in watch["recent"], watch
        assert http.get("/v1/profiles/nobody/triggers").status_code == 404
        missing = http.get("/v1/rules/nope/uplift")
        assert missing.status_code == 404 and "cart_abandoned" in missing.json()["error"]
        configured = http.get("/v1/rules").json()
        assert [r["name"] for r in configured["rules"]] == [r["name"] for r in RULES["rules"]]
    for (rule, outcome), n in expected.items():
        live = worker.metric("cdpulse_triggers_total", {"rule": rule, "outcome": outcome})
        assert live <= n if kill else live == n, (rule, outcome, live, n)
    # The offers' outcomes reach the bandit's learner (pseudonymously), which publishes
    # a policy.
    rewards = {
        pseudonym_id(i): converted
        for i, converted in closed.items()
        if outcomes[i][0].rule == "cart_abandoned" and outcomes[i][1] == "fired"
    }
    assert rewards, "some cart offers must have a closed window"
    wait_until(
        lambda: caught_up(env.settings, env.settings.topic_offer_rewards),
        120,
        "the offer learner to learn every reward",
    )
    published = consume_all(env.settings, env.settings.topic_offer_rewards, len(rewards))
    learned = {
        i: Reward.from_json(raw) for i, raw in first_of_each(published, "trigger_id").items()
    }
    assert {i: r.reward for i, r in learned.items() if i in rewards} == {
        i: float(c) for i, c in rewards.items()
    }
    assert all(r.rule == "cart_abandoned" and r.offer in OFFERS for r in learned.values())
    if not kill:
        # The learner folds in every record of its topic: exact when nothing repeated.
        assert len(published) == len(learned)
        for reward in (0, 1):
            live = learner.metric(
                "cdpulse_offer_rewards_total", {"rule": "cart_abandoned", "reward": str(reward)}
            )
            assert live == sum(r == reward for r in rewards.values()), reward
    assert learner.metric("cdpulse_model_version", {"model": "offers"}) >= 1


def test_uplift_tallies_are_claimed_once_with_the_save_and_read_by_the_trigger_store(
    env: Env,
) -> None:
    """The uplift views' counters: each claim counted once, and only if its save is. A
    customer's claims are one hash that lapses with its newest claim; an earlier
    version's claim key still standing counts as claimed."""
    admin, keys = env.redis, keys_for(env.redis, env.name)
    claimed = keys.claimed("C-1")

    async def run() -> None:
        client = async_redis(env.settings.redis_url)
        state = RedisState(
            client, env.name, pseudonym=lambda i: f"p-{i}", shard_of=lambda profile_id: 0
        )
        store = RedisTriggerStore(client, env.name)

        def save(version: int, *tallies: tuple[str, str, str]) -> Changes:
            profile = Profile(id="C-1", customer_id="C-1", events=version + 1)
            return Changes([Save(profile, version, tallies=list(tallies))])

        try:
            first = save(0, ("t1", "cart", "treated"), ("t2", "cart", "treated"))
            assert await state.write(first) == {"C-1": SaveStatus.SAVED}
            # t1 again (a firing published twice) counts nothing; t3 is new
            again = save(
                1, ("t1", "cart", "treated"), ("t3:converted", "cart", "holdout_converted")
            )
            assert await state.write(again) == {"C-1": SaveStatus.SAVED}
            # a refused save (its version moved) counts nothing, not even a new claim
            stale = save(1, ("t4", "cart", "holdout"))
            assert await state.write(stale) == {"C-1": SaveStatus.CONFLICT}
            assert await store.counts("cart") == {
                "treated": 2,
                "treated_converted": 0,
                "holdout": 0,
                "holdout_converted": 1,
            }
            empty = {"treated": 0, "treated_converted": 0, "holdout": 0, "holdout_converted": 0}
            assert await store.counts("cross_sell") == empty
            # the refused claim was not taken: a later save of t4 counts it
            assert await state.write(save(2, ("t4", "cart", "holdout"))) == {
                "C-1": SaveStatus.SAVED
            }
            assert (await store.counts("cart"))["holdout"] == 1
            assert set(admin.hkeys(claimed)) == {b"t1", b"t2", b"t3:converted", b"t4"}
            assert 0 < admin.pttl(claimed) <= CLAIM_SECONDS * 1000
            # t5 claimed by an earlier version; t2 and t6 lapsed (in 1970): t2 counts
            # again, t5 does not, and the lapsed t6 is dropped.
            admin.set(keys.fired("C-1", "t5"), 1, ex=60)
            admin.hset(claimed, mapping={"t2": 1, "t6": 1})
            across = save(3, ("t5", "cart", "treated"), ("t2", "cart", "treated"))
            assert await state.write(across) == {"C-1": SaveStatus.SAVED}
            assert (await store.counts("cart"))["treated"] == 3
            assert set(admin.hkeys(claimed)) == {b"t1", b"t2", b"t3:converted", b"t4"}
        finally:
            await client.aclose()

    asyncio.run(run())
