"""The trigger rules' wiring outside the pipeline: their counters for the views, and the
offer learner.

Offers follow "one learner, many scorers": every worker chooses offers with the newest
published policy; the outcomes (rewards) go to a one-partition topic, and one learner
folds them in, in order, and publishes the next policy.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from cdpulse.connections import AsyncRedis
from cdpulse.offers.bandit import OfferPolicy, OfferSnapshot, Reward
from cdpulse.ops import metrics
from cdpulse.privacy.seal import Seal
from cdpulse.settings import Settings
from cdpulse.store.models import SnapshotStore, offer_store
from cdpulse.store.triggers import RedisTriggerStore
from cdpulse.triggers.rules import TriggerConfig, load_rules

log = logging.getLogger(__name__)


@dataclass
class TriggerService:
    """What the rule views and the offer learner share."""

    config: TriggerConfig
    store: RedisTriggerStore
    policies: SnapshotStore[OfferSnapshot]
    epsilon: float
    rewards_topic: Any  # faust.TopicT: cdp.offer-rewards, one partition

    @classmethod
    def create(cls, settings: Settings, client: AsyncRedis, app: Any) -> TriggerService:
        return cls(
            load_rules(settings.trigger_rules),
            RedisTriggerStore(client, settings.redis_prefix),
            offer_store(client, settings.redis_prefix, Seal.from_settings(settings)),
            settings.offer_epsilon,
            app.topic(settings.topic_offer_rewards, key_type=bytes, value_type=bytes, partitions=1),
        )

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
