"""Create cdpulse's topics when they are missing (the broker does not auto-create).

Every topic gets ``CDPULSE_TOPIC_REPLICATION`` replicas and ``min.insync.replicas`` of
``CDPULSE_TOPIC_MIN_INSYNC_REPLICAS``: with every cdpulse producer on ``acks=all``, a
record acknowledged is on that many brokers, so losing one broker loses none of them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from cdpulse.connections import kafka_options
from cdpulse.contract.topics import Topics
from cdpulse.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)

# How long a cluster that is starting gets to show enough live brokers: each broker answers
# before every other one's registration has reached it (seen: 2 of 3 for a moment).
BROKERS_WAIT_SECONDS = 15.0
# How long topics just created (here or by another role starting beside this one) get to
# show a leader for every partition before the process goes on without waiting further.
LEADERS_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as cdpulse creates it."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


def topic_specs(settings: Settings, extra: tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic cdpulse creates, with its partitions, replication and configs."""
    topics = Topics.from_settings(settings)

    def partitions(name: str) -> int:
        # One partition for training examples and rewards: one learner sees them all, in
        # one order. Item events are sharded by customer: each shard learns on its own.
        if name == topics.reco_events:
            return settings.reco_shards
        # One for the erasure ledger too: rare, small, read whole by a rebuild.
        single = (
            topics.training,
            topics.campaign_training,
            topics.persona_training,
            topics.offer_rewards,
            topics.erasures,
        )
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
        if name == topics.read_audit:
            days = settings.read_audit_retention_days
            return {"retention.ms": str(int(days * 86_400_000)) if days else "-1"}
        return {}

    durability = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    return [
        TopicSpec(name, partitions(name), settings.topic_replication, configs(name) | durability)
        for name in (*topics.all, *extra)
    ]


def live_brokers(admin: KafkaAdminClient, wanted: int) -> int:
    """The live brokers the cluster reports, waiting up to ``BROKERS_WAIT_SECONDS`` for
    ``wanted`` of them."""
    deadline = time.monotonic() + BROKERS_WAIT_SECONDS
    while True:
        brokers = len(admin.describe_cluster()["brokers"])
        if brokers >= wanted or time.monotonic() >= deadline:
            return brokers
        time.sleep(0.5)


def ensure_topics(settings: Settings, extra: tuple[str, ...] = ()) -> list[str]:
    """Create cdpulse's topics that do not exist yet; returns those created.

    Raises :class:`ConfigurationError` when a topic is missing and the cluster has fewer
    live brokers than ``CDPULSE_TOPIC_REPLICATION``.
    """
    specs = topic_specs(settings, extra)
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=15000,
        **kafka_options(settings),
    )
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            _wait_for_leaders(admin, specs)
            return []
        # Checked only before creating: a process restarting while one broker of a
        # replicated cluster is down must start, and its topics are there already.
        brokers = live_brokers(admin, settings.topic_replication)
        if brokers < settings.topic_replication:
            raise ConfigurationError(
                f"CDPULSE_TOPIC_REPLICATION={settings.topic_replication}, but the Kafka "
                f"cluster at {settings.kafka_bootstrap} has {brokers} live broker(s), so "
                f"topics {', '.join(s.name for s in missing)} cannot be created: set "
                "CDPULSE_TOPIC_REPLICATION (and CDPULSE_TOPIC_MIN_INSYNC_REPLICAS) to at most "
                f"{brokers} (1 and 1 for the single-node local stack: "
                'eval "$(deploy/local/stack.sh env)"), or start more brokers'
            )
        # Another process may create them between our list and create: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {
                    spec.name: {
                        "num_partitions": spec.partitions,
                        "replication_factor": spec.replication,
                        "configs": spec.configs,
                    }
                    for spec in missing
                },
                timeout_ms=15000,
            )
        created = [spec.name for spec in missing]
        log.info("created topics %s", created)
        _wait_for_leaders(admin, specs)
        return created
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Wait until every partition of ``specs`` has a leader, up to LEADERS_WAIT_SECONDS.

    The roles start side by side and each creates what is missing: one may find a topic
    another just created before the broker answers for its partitions. A consumer that
    subscribes then ignores the topic until its next metadata refresh (minutes): seen
    as a worker that applied nothing for a minute on a busy machine.
    """
    wanted = {spec.name: spec.partitions for spec in specs}
    deadline = time.monotonic() + LEADERS_WAIT_SECONDS
    while True:
        waiting = sorted(set(wanted) - _led(admin, wanted))
        if not waiting:
            return
        if time.monotonic() >= deadline:
            log.warning("topics %s have partitions without a leader yet; going on", waiting)
            return
        time.sleep(0.2)


def _led(admin: KafkaAdminClient, wanted: dict[str, int]) -> set[str]:
    """The topics of ``wanted`` whose every partition (of the number wanted) has a leader."""
    led = set()
    for topic in admin.describe_topics(list(wanted)):
        # kafka-python's answer as its metadata version spells it (2.1+: name, leader_id)
        name = topic.get("name", topic.get("topic", ""))
        partitions = topic.get("partitions") or []
        if (
            topic.get("error_code", 0) == 0
            and len(partitions) >= wanted.get(name, 1)
            and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in partitions)
        ):
            led.add(name)
    return led
