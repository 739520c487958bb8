"""Campaign response: labels in event time, features, the learner, and the replay."""

from __future__ import annotations

import asyncio
import json
import random

from cdpulse.contract.message import Message
from cdpulse.contract.partitions import partition_of
from cdpulse.contract.topics import Topics
from cdpulse.models.campaign.features import FEATURE_NAMES, campaign_features, vector
from cdpulse.models.campaign.labels import CampaignExample, CampaignLabeler, campaign_key
from cdpulse.models.campaign.model import CampaignLearner
from cdpulse.models.churn.labels import ChurnLabeler
from cdpulse.pipeline.campaign_replay import replay_campaign
from cdpulse.pipeline.replay import Messages, feed, replay_pipeline
from cdpulse.pipeline.stages import Models
from cdpulse.profile.model import Exposures, Profile
from cdpulse.profile.view import render
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop

LABELER = CampaignLabeler(window=2 * DAY, lateness=0)
SETTINGS = Settings(pseudonym_key="k" * 32)


def customer() -> Profile:
    return Profile(id="C-1", customer_id="C-1")


def test_a_response_to_the_same_campaign_within_the_window_labels_the_exposure_1() -> None:
    p = customer()
    LABELER.observe(p, "email_opened", "nl-1", 0)
    LABELER.observe(p, "email_opened", "nl-2", 0)
    LABELER.observe(p, "offer_shown", "welcome10", DAY)
    LABELER.observe(p, "offer_shown", "winter15", DAY)
    LABELER.observe(p, "email_clicked", "nl-2", 2 * DAY)  # the window's last instant
    LABELER.observe(p, "email_clicked", "welcome10", DAY)  # an email click, not an offer
    LABELER.observe(p, "offer_redeemed", "winter15", 3 * DAY + 1)  # a millisecond late
    LABELER.observe(p, "offer_redeemed", "welcome10", 2 * DAY)
    examples, due = LABELER.decide(p, 4 * DAY)
    got = {(e.exposed_at // DAY, e.key): e.label for e in examples}
    assert got == {
        (0, campaign_key("nl-1", 0)): 0,
        (0, campaign_key("nl-2", 0)): 1,
        (1, campaign_key("welcome10", 1)): 1,
        (1, campaign_key("winter15", 1)): 0,
    }
    assert due is None and p.campaign is not None and p.campaign.pending == []
    assert p.campaign.tally(False) == (2, 1) and p.campaign.tally(True) == (2, 1)


def test_a_label_waits_for_the_watermark_to_pass_its_window() -> None:
    p = customer()
    LABELER.observe(p, "email_opened", "nl-1", DAY)
    LABELER.observe(p, "email_opened", "nl-2", 2 * DAY)
    assert LABELER.decide(p, 3 * DAY - 1) == ([], 3 * DAY)
    examples, due = LABELER.decide(p, 3 * DAY)
    assert [e.exposed_at for e in examples] == [DAY] and due == 4 * DAY
    # the tally a later exposure reads counts the earlier one, once decided
    assert examples[0].features[FEATURE_NAMES.index("past_exposures")] == 0.0
    later, _ = LABELER.decide(p, 4 * DAY)
    assert later[0].features[FEATURE_NAMES.index("past_exposures")] == 1.0


def test_an_analytics_refusal_drops_the_exposures_not_decided_by_then() -> None:
    p = customer()
    LABELER.observe(p, "email_opened", "nl-1", 0)
    LABELER.observe(p, "email_opened", "nl-2", 2 * DAY)
    p.consent["analytics"] = (3 * DAY, False)
    LABELER.observe(p, "email_opened", "nl-3", 3 * DAY)  # withheld: not recorded
    examples, due = LABELER.decide(p, DAY)
    assert examples == [] and due == 2 * DAY  # nl-2 (due at 4 days) is dropped already
    examples, due = LABELER.decide(p, 3 * DAY)
    assert [e.exposed_at for e in examples] == [0]
    assert due is None and p.campaign is None  # past the refusal: the tally goes too


def test_features_read_the_day_before_the_exposure() -> None:
    """An order in the session that showed the offer is its redemption, not a sign of it."""
    p = Profile(id="C-1", churn_days={0: [2, 1, 30.0], 3 * DAY: [5, 1, 50.0]})
    p.campaign = Exposures(emails=4, clicked=3)
    x = campaign_features(p, 3 * DAY + 600_000, offer=False)
    assert x["days_since_last_order"] == 2.0 and x["orders_30d"] == 1.0
    assert (x["past_exposures"], x["past_response_rate"]) == (4.0, 0.75)
    assert campaign_features(p, 3 * DAY, offer=True)["past_exposures"] == 0.0


def test_examples_round_trip_through_json() -> None:
    example = CampaignExample("C-1", 5, campaign_key("x", 1), 9, 1, [0.5] * len(FEATURE_NAMES))
    assert CampaignExample.from_json(example.to_json()) == example
    assert example.offer


def test_the_learner_skips_redelivered_examples_and_measures_before_learning() -> None:
    learner = CampaignLearner.fresh()
    x = vector(dict.fromkeys(FEATURE_NAMES, 1.0))
    pairs = [(i, CampaignExample("C", i, 0, i, i % 2, x)) for i in range(10)]
    first = learner.learn(pairs[:6])
    again = learner.learn(pairs)
    assert (first.learned, again.skipped, again.learned) == (6, 6, 4)
    assert first.predictions[0] == 0.5  # scored before anything was learned
    assert learner.quality.examples == 10 and learner.snapshot().offset == 9


def _interleaved(lines: list[bytes], seed: int) -> list[CampaignExample]:
    """The worker's stages over memory, fed as Kafka might: each partition in order, the
    partitions and topics in a random interleaving, cut into batches of random sizes."""
    _, pipeline = replay_pipeline(
        SETTINGS,
        Models(),
        ChurnLabeler.from_settings(SETTINGS),
        partition_of,
        campaign=CampaignLabeler.from_settings(SETTINGS),
    )
    queues: dict[tuple[str, int], list[Message]] = {}

    async def keep(batch: list[Message]) -> None:
        for m in batch:
            queues.setdefault((m.topic, m.partition), []).append(m)

    cutter = Messages(Topics.from_settings(SETTINGS), SETTINGS.topic_partitions, partition_of)
    asyncio.run(feed(lines, cutter, keep, batch_size=1))
    rng = random.Random(seed)
    out: list[CampaignExample] = []

    async def main() -> None:
        batch: list[Message] = []
        size = rng.randint(50, 800)
        while any(queues.values()):
            queue = rng.choice([q for q in queues.values() if q])
            take = rng.randint(1, 300)
            batch += queue[:take]
            del queue[:take]
            if len(batch) >= size:
                out.extend((await pipeline.run(batch)).work.campaign)
                batch, size = [], rng.randint(50, 800)
        out.extend((await pipeline.run(batch)).work.campaign)
        out.extend((await pipeline.run([])).work.campaign)

    asyncio.run(main())
    return out


def test_the_same_labels_in_the_same_order_whatever_kafka_hands_over_first() -> None:
    lines = [json.dumps(e).encode() for e in Shop(80, 45, seed=7, responsive=True).events()]
    replayed = asyncio.run(replay_campaign(lines, SETTINGS, partition_of)).examples
    assert len(replayed) > 100 and {e.label for e in replayed} == {0, 1}
    assert replayed == sorted(replayed, key=lambda e: e.order)
    for seed in range(3):
        assert _interleaved(lines, seed) == replayed, seed


def test_the_replayed_model_beats_the_response_rate_of_the_kind() -> None:
    events = Shop(customers=500, days=90, seed=3, responsive=True).events()
    lines = [json.dumps(e).encode() for e in events]
    result = asyncio.run(replay_campaign(lines, SETTINGS, partition_of))
    assert result.model["examples"] == result.baseline["examples"] > 2000
    assert result.model["roc_auc"] > result.baseline["roc_auc"]
    assert result.model["log_loss"] < result.baseline["log_loss"]
    scored = [s for s in result.scores.values() if s is not None]
    assert scored and all(0.0 <= s["propensity"] <= 1.0 for s in scored)
    assert all(len(s["reasons"]) == 3 and all(s["reasons"]) for s in scored)


def test_responsive_customers_click_in_proportion_to_their_purchase_intent() -> None:
    shop = Shop(customers=300, days=60, seed=11, responsive=True)
    events = list(shop.events())
    intent = {c.customer_id: c.purchase_intent for c in shop.customers}
    opened: dict[str, int] = {}
    clicked: dict[str, int] = {}
    for e in events:
        if e["type"] == "email_opened":
            opened[e["customer_id"]] = opened.get(e["customer_id"], 0) + 1
        elif e["type"] == "email_clicked":
            clicked[e["customer_id"]] = clicked.get(e["customer_id"], 0) + 1
    ranked = sorted(opened, key=lambda c: intent[c])
    low, high = ranked[: len(ranked) // 3], ranked[-len(ranked) // 3 :]

    def rate(group: list[str]) -> float:
        return sum(clicked.get(c, 0) for c in group) / sum(opened[c] for c in group)

    assert rate(high) > 2 * rate(low)


def test_one_exposure_per_campaign_and_window_and_a_bounded_number_per_window() -> None:
    from collections import Counter

    from cdpulse.profile import limits

    p, dropped = customer(), Counter[str]()
    LABELER.observe(p, "offer_shown", "welcome10", 0)
    LABELER.observe(p, "offer_shown", "welcome10", DAY)  # its first showing's window is open
    LABELER.observe(p, "offer_shown", "welcome10", 2 * DAY + 1)  # closed: a new exposure
    assert p.campaign is not None
    assert [t for t, _, _ in p.campaign.pending] == [0, 2 * DAY + 1]
    for n in range(limits.EXPOSURES_KEPT + 2):
        LABELER.observe(p, "email_opened", f"nl-{n}", 3 * DAY + n, dropped)
    recent = [t for t, _, _ in p.campaign.pending if t >= 3 * DAY]
    assert len(recent) == limits.EXPOSURES_KEPT - 1  # the offer at 2 days + 1 ms counts
    assert dropped[limits.counted(limits.CAMPAIGN_EXPOSURES)] == 3


def test_segments_read_the_propensity_of_each_kind_at_the_last_event() -> None:
    from cdpulse.models.campaign.scoring import propensity
    from cdpulse.profile.rules import Rules
    from cdpulse.segments.definitions import parse
    from cdpulse.segments.fields import document_fields, profile_fields
    from cdpulse.segments.membership import decide

    learner = CampaignLearner.fresh()
    zero = dict.fromkeys(FEATURE_NAMES, 0.0)
    pairs = []
    for i in range(300):
        x = zero | {"past_exposures": 4.0, "past_response_rate": float(i % 2), "offer": 0.0}
        pairs.append((i, CampaignExample("C", i, 0, i, i % 2, vector(x))))
    learner.learn(pairs)
    snapshot = learner.snapshot()
    rules = Rules()
    p = Profile(id="C-1", customer_id="C-1", events=5, last_seen=10 * DAY)
    p.churn_days = {9 * DAY: [5, 1, 20.0]}
    p.campaign = Exposures(emails=4, clicked=4)
    want = {
        kind: propensity(p, snapshot, kind == "offer", p.last_seen)["propensity"]
        for kind in ("email", "offer")
    }
    assert 0.5 < want["email"] < 1.0
    record = profile_fields(p, rules, campaign=snapshot)
    assert record["propensity"] == want
    assert "propensity" not in profile_fields(p, rules)  # no model yet: absent, not 0
    document = render(p, p.last_seen, rules)
    assert dict(record) == document_fields(document, propensity=want)
    book = parse("segments:\n  - name: responsive\n    when: propensity.email > 0.5\n", "s")
    assert decide(book, p, rules, None, None, snapshot).members == {"responsive"}
    assert decide(book, p, rules, None).errors == ("responsive",)
    p.consent["personalization"] = (0, False)  # README: consent matrix
    assert "propensity" not in profile_fields(p, rules, campaign=snapshot)
