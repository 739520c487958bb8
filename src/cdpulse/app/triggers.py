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
from cdpulse.triggers.outputs import trigger_messages, uplift_tallies
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
        messages = trigger_messages(expired, self.config, snapshot, self.policy)
        deliveries = [
            await self.topic.send(key=m.customer_id.encode(), value=m.model_dump_json().encode())
            for m in messages
            if m.trigger_id in fresh
        ]
        for delivery in deliveries:
            await delivery

    def record(self, expired: Expired) -> None:
        """Count saved outcomes in /metrics and reward the bandit (this process's own)."""
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
