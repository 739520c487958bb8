"""Create cdpulse's topics when they are missing (the broker does not auto-create)."""

from __future__ import annotations

import contextlib
import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from cdpulse.connections import kafka_options
from cdpulse.contract.topics import Topics
from cdpulse.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, extra: tuple[str, ...] = ()) -> list[str]:
    """Create cdpulse's topics that do not exist yet; returns those created."""
    topics = Topics.from_settings(settings)
    names = (*topics.all, *extra)

    def partitions(name: str) -> int:
        # One partition for training examples and rewards: one learner sees them all, in
        # one order. Item events are sharded by customer: each shard learns on its own.
        if name == topics.reco_events:
            return settings.reco_shards
        # One for the erasure ledger too: rare, small, read whole by a rebuild.
        single = (topics.training, topics.offer_rewards, topics.erasures)
        return 1 if name in single else settings.topic_partitions

    def configs(name: str) -> dict[str, str]:
        if name in topics.compacted:
            # Erasure tombstones replace a customer's records; compaction removes the
            # older ones (README: Privacy and security).
            return {"cleanup.policy": "compact", "segment.ms": "3600000"}
        if name == topics.erasures:
            # The ledger: the newest record per pseudonym, kept forever (compaction
            # without deletion); never tombstoned (README: Privacy and security).
            return {"cleanup.policy": "compact"}
        if name == topics.audit:
            return {"retention.ms": "-1"}  # the audit trail of erasures is kept
        return {}

    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=15000,
        **kafka_options(settings),
    )
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        # Another process may create them between our list and create: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(n, partitions(n), 1, topic_configs=configs(n)) for n in missing],
                timeout_ms=15000,
            )
        log.info("created topics %s", missing)
        return missing
    finally:
        admin.close()
