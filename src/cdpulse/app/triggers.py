"""The trigger engine's wiring in the worker: rules, offers, their topic and counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.offers.bandit import OfferPolicy
from cdpulse.ops import metrics
from cdpulse.settings import Settings
from cdpulse.store.triggers import RedisTriggerStore
from cdpulse.triggers.engine import Expired, TriggerEngine
from cdpulse.triggers.outputs import trigger_messages, uplift_counts
from cdpulse.triggers.rules import TriggerConfig, load_rules

# How long a published trigger id is remembered: far longer than any redelivery takes.
CLAIM_SECONDS = 2 * 86_400


@dataclass
class TriggerService:
    """What the profile agent and the rule views share about triggers."""

    config: TriggerConfig
    store: RedisTriggerStore
    offers: OfferPolicy
    engine: TriggerEngine
    topic: Any  # faust.TopicT: cdp.triggers

    @classmethod
    def create(
        cls, settings: Settings, client: Any, session_gap: int, topic: Any
    ) -> TriggerService:
        config = load_rules(settings.trigger_rules)
        store = RedisTriggerStore(client, settings.redis_prefix)
        offers = OfferPolicy(settings.offer_epsilon)
        engine = TriggerEngine(config, store, session_gap=session_gap, chooser=offers.chooser)
        return cls(config, store, offers, engine, topic)

    @property
    def policy(self) -> str:
        return f"epsilon-greedy LinUCB, e={self.offers.epsilon}"

    async def publish(self, expired: Expired, snapshot: RecoSnapshot | None) -> None:
        """Send the fired decisions not sent before, and wait until the broker has them."""
        messages = trigger_messages(expired, self.config, snapshot, self.policy)
        fresh = await self.store.claim(
            [(m.customer_id, m.trigger_id) for m in messages], CLAIM_SECONDS
        )
        deliveries = [
            await self.topic.send(key=m.customer_id.encode(), value=m.model_dump_json().encode())
            for m in messages
            if m.trigger_id in fresh
        ]
        for delivery in deliveries:
            await delivery

    async def record(self, expired: Expired) -> None:
        """Count outcomes, add conversions to the uplift counters, reward the bandit."""
        # The one Redis call first: retried after a failure, nothing below runs twice.
        await self.store.count(uplift_counts(expired))
        for decision in expired.decisions:
            metrics.TRIGGERS.labels(decision.pending.rule, decision.outcome).inc()
        for attribution in expired.attributions:
            exposure = attribution.exposure
            if attribution.converted:
                group = "holdout" if exposure.holdout else "treated"
                metrics.TRIGGER_CONVERSIONS.labels(exposure.rule, group).inc()
            if exposure.offer and not exposure.holdout:
                reward = 1.0 if attribution.converted else 0.0
                self.offers.learn(exposure.rule, exposure.offer, exposure.features, reward)
