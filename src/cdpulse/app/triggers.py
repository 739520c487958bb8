"""The trigger engine's wiring in the worker: rules, offers, their topics and counters.

Offers follow "one learner, many scorers": every worker chooses offers with the newest
published policy; the outcomes (rewards) go to a one-partition topic, and one learner
folds them in, in order, and publishes the next policy.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.offers.bandit import OfferPolicy, OfferSnapshot, Reward
from cdpulse.ops import metrics
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.model import Profile
from cdpulse.settings import Settings
from cdpulse.store.models import SnapshotStore, offer_store
from cdpulse.store.triggers import RedisTriggerStore
from cdpulse.triggers.decide import Chooser
from cdpulse.triggers.engine import Expired, TriggerEngine
from cdpulse.triggers.outputs import rewards, trigger_messages, uplift_tallies
from cdpulse.triggers.rules import TriggerConfig, load_rules

log = logging.getLogger(__name__)

# How long a published trigger id is remembered: far longer than any redelivery takes.
CLAIM_SECONDS = 2 * 86_400


@dataclass
class TriggerService:
    """What the profile agent, the offer learner and the rule views share."""

    config: TriggerConfig
    store: RedisTriggerStore
    policies: SnapshotStore[OfferSnapshot]
    epsilon: float
    engine: TriggerEngine
    topic: Any  # faust.TopicT: cdp.triggers
    rewards_topic: Any  # faust.TopicT: cdp.offer-rewards, one partition
    pseudonyms: Pseudonymizer

    @classmethod
    def create(
        cls,
        settings: Settings,
        client: aioredis.Redis,
        session_gap: int,
        app: Any,
        pseudonyms: Pseudonymizer,
    ) -> TriggerService:
        config = load_rules(settings.trigger_rules)
        store = RedisTriggerStore(client, settings.redis_prefix)
        service = cls(
            config,
            store,
            offer_store(client, settings.redis_prefix),
            settings.offer_epsilon,
            TriggerEngine(
                config,
                store,
                session_gap=session_gap,
                lateness=int(settings.trigger_lateness_seconds * 1000),
            ),
            app.topic(settings.topic_triggers, key_type=bytes, value_type=bytes),
            app.topic(settings.topic_offer_rewards, key_type=bytes, value_type=bytes, partitions=1),
            pseudonyms,
        )
        service.engine.chooser = service.chooser
        return service

    def policy(self) -> OfferPolicy:
        """The newest published offer policy, or an untrained one."""
        snapshot = self.policies.get()
        return snapshot.policy if snapshot is not None else OfferPolicy(self.epsilon)

    def chooser(self, profile: Profile) -> Chooser:
        return self.policy().chooser(profile)

    @property
    def policy_name(self) -> str:
        snapshot = self.policies.get()
        version = snapshot.version if snapshot is not None else 0
        return f"epsilon-greedy LinUCB, e={self.epsilon}, v{version}"

    async def publish(self, expired: Expired, snapshot: RecoSnapshot | None) -> None:
        """Count and send what was not counted and sent before; wait for the broker.

        Firings and conversions are claimed by id first (SET NX): decided again after a
        crash, they are neither counted nor sent twice.
        """
        tallies = uplift_tallies(expired)
        fresh = await self.store.claim([(t.customer_id, t.claim) for t in tallies], CLAIM_SECONDS)
        counts: dict[tuple[str, str], int] = {}
        for t in tallies:
            if t.claim in fresh:
                counts[(t.rule, t.counter)] = counts.get((t.rule, t.counter), 0) + 1
        await self.store.count(counts)
        messages = trigger_messages(expired, self.config, snapshot, self.policy_name)
        deliveries = [
            await self.topic.send(key=m.customer_id.encode(), value=m.model_dump_json().encode())
            for m in messages
            if m.trigger_id in fresh
        ]
        for delivery in deliveries:
            await delivery

    async def record(self, expired: Expired) -> None:
        """Count saved outcomes in /metrics and send the offers' rewards to their learner."""
        # The learner needs the offer, features and reward, not who converted: the topic
        # keeps its history, so the trigger id (which names the customer) is pseudonymised
        # and an erasure leaves nothing of them readable there.
        deliveries = [
            await self.rewards_topic.send(
                key=r.rule.encode(),
                value=replace(r, trigger_id=self.pseudonyms.of_id(r.trigger_id)).to_json(),
            )
            for r in rewards(expired)
        ]
        for delivery in deliveries:
            await delivery
        for decision in expired.decisions:
            metrics.TRIGGERS.labels(decision.pending.rule, decision.outcome).inc()
        for attribution in expired.attributions:
            if attribution.converted:
                exposure = attribution.exposure
                group = "holdout" if exposure.holdout else "treated"
                metrics.TRIGGER_CONVERSIONS.labels(exposure.rule, group).inc()

    async def learn(self, records: list[tuple[int, bytes]]) -> None:
        """Fold rewards (offset, raw) into the newest policy and publish the next one."""
        await self.policies.refresh()
        current = self.policies.get() or OfferSnapshot(0, OfferPolicy(self.epsilon), -1)
        policy = copy.deepcopy(current.policy)  # the published one keeps choosing meanwhile
        offset = current.offset
        for at, raw in records:
            if at <= offset:
                continue  # re-delivered: already in this policy
            try:
                reward = Reward.from_json(raw)
                policy.learn(reward.rule, reward.offer, reward.features, reward.reward)
                metrics.OFFER_REWARDS.labels(reward.rule, str(int(reward.reward))).inc()
            except (ValueError, TypeError, KeyError):
                log.error("unreadable offer reward at offset %s; skipped", at)
            offset = at
        if offset > current.offset:
            snapshot = OfferSnapshot(current.version + 1, policy, offset)
            if await self.policies.publish(snapshot):
                metrics.MODEL_VERSION.labels("offers").set(snapshot.version)
