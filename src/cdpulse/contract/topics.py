"""Which topic each event type travels on, and the message key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdpulse.settings import Settings

Stream = Literal["clickstream", "transactions", "customers"]

STREAM_OF_TYPE: dict[str, Stream] = {
    "page_viewed": "clickstream",
    "product_viewed": "clickstream",
    "search_performed": "clickstream",
    "product_added": "clickstream",
    "product_removed": "clickstream",
    "checkout_started": "clickstream",
    # The tracking plan's own events: a visit's activity, in order with its page views.
    "custom": "clickstream",
    "order_completed": "transactions",
    "order_refunded": "transactions",
    "identify": "customers",
    "consent_updated": "customers",
    "email_opened": "customers",
    "email_clicked": "customers",
    "offer_shown": "customers",
    "offer_redeemed": "customers",
    "erasure_requested": "customers",
    "customers_merged": "customers",
}


@dataclass(frozen=True, slots=True)
class Topics:
    """The configured topic names."""

    clickstream: str
    transactions: str
    customers: str
    dead_letter: str
    training: str = "cdp.training"
    reco_events: str = "cdp.reco-events"
    recommendations: str = "cdp.recommendations"
    segments: str = "cdp.segments"
    audit: str = "cdp.audit"
    read_audit: str = "cdp.read-audit"
    triggers: str = "cdp.triggers"
    offer_rewards: str = "cdp.offer-rewards"
    erasures: str = "cdp.erasures"
    campaign_training: str = "cdp.campaign-training"
    persona_training: str = "cdp.persona-training"

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(
            clickstream=settings.topic_clickstream,
            transactions=settings.topic_transactions,
            customers=settings.topic_customers,
            dead_letter=settings.topic_dead_letter,
            training=settings.topic_training,
            reco_events=settings.topic_reco_events,
            recommendations=settings.topic_recommendations,
            segments=settings.topic_segments,
            audit=settings.topic_audit,
            read_audit=settings.topic_read_audit,
            triggers=settings.topic_triggers,
            offer_rewards=settings.topic_offer_rewards,
            erasures=settings.topic_erasures,
            campaign_training=settings.topic_campaign_training,
            persona_training=settings.topic_persona_training,
        )

    @property
    def inputs(self) -> tuple[str, str, str]:
        """The topics the worker consumes."""
        return (self.clickstream, self.transactions, self.customers)

    @property
    def all(self) -> tuple[str, ...]:
        return (
            *self.inputs,
            self.dead_letter,
            self.training,
            self.reco_events,
            self.recommendations,
            self.segments,
            self.audit,
            self.read_audit,
            self.triggers,
            self.offer_rewards,
            self.erasures,
            self.campaign_training,
            self.persona_training,
        )

    @property
    def compacted(self) -> tuple[str, ...]:
        """Topics keyed by customer that keep the newest record per key: an erasure
        publishes a tombstone (a null value) to each, per erased id."""
        return (self.recommendations, self.triggers, self.segments)

    def for_type(self, event_type: str) -> str:
        """The topic an event of ``event_type`` is published to."""
        stream: Stream = STREAM_OF_TYPE[event_type]
        return str(getattr(self, stream))
