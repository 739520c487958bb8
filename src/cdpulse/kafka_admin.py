"""Create cdpulse's topics when they are missing (the broker does not auto-create)."""

from __future__ import annotations

import contextlib
import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from cdpulse.contract.topics import Topics
from cdpulse.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, extra: tuple[str, ...] = ()) -> list[str]:
    """Create the input and dead-letter topics that do not exist yet; returns those created."""
    topics = Topics.from_settings(settings)
    names = (*topics.all, *extra)

    def partitions(name: str) -> int:
        # One partition for training examples: one learner sees them all, in one order.
        single = (topics.training, topics.reco_events, topics.offer_rewards)
        return 1 if name in single else settings.topic_partitions

    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=15000,
    )
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        # Another process may create them between our list and create: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(n, partitions(n), 1) for n in missing], timeout_ms=15000)
        log.info("created topics %s", missing)
        return missing
    finally:
        admin.close()
