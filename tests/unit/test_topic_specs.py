"""The topics cdpulse creates: replication and min.insync.replicas on every one, the
compacted ones still compacted, and settings that cannot work refused by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdpulse.contract.topics import Topics
from cdpulse.kafka_admin import topic_specs
from cdpulse.settings import Settings


def test_production_defaults_are_three_replicas_and_two_in_sync() -> None:
    settings = Settings()
    assert (settings.topic_replication, settings.topic_min_insync_replicas) == (3, 2)


@pytest.mark.parametrize(("replication", "min_isr"), [(3, 2), (1, 1), (5, 3)])
def test_every_topic_gets_the_replication_and_min_isr(replication: int, min_isr: int) -> None:
    settings = Settings(topic_replication=replication, topic_min_insync_replicas=min_isr)
    specs = topic_specs(settings, extra=("side.topic",))
    assert [s.name for s in specs] == [*Topics.from_settings(settings).all, "side.topic"]
    for spec in specs:
        assert spec.replication == replication, spec
        assert spec.configs["min.insync.replicas"] == str(min_isr), spec


def test_retention_and_cleanup_policies_are_kept() -> None:
    settings = Settings()
    topics = Topics.from_settings(settings)
    configs = {s.name: s.configs for s in topic_specs(settings)}
    for name in topics.compacted:
        assert configs[name] == {
            "cleanup.policy": "compact",
            "segment.ms": "3600000",
            "min.insync.replicas": "2",
        }
    assert configs[topics.erasures] == {"cleanup.policy": "compact", "min.insync.replicas": "2"}
    assert configs[topics.audit] == {"retention.ms": "-1", "min.insync.replicas": "2"}
    assert configs[topics.clickstream] == {"min.insync.replicas": "2"}
    # reads are many: their audit trail is kept CDPULSE_READ_AUDIT_RETENTION_DAYS (400)
    day = 86_400_000
    kept_days = {"retention.ms": str(400 * day), "min.insync.replicas": "2"}
    assert configs[topics.read_audit] == kept_days
    kept = Settings(read_audit_retention_days=0)
    forever = {s.name: s.configs for s in topic_specs(kept)}[topics.read_audit]
    assert forever["retention.ms"] == "-1"


def test_partitions_follow_the_topic_role() -> None:
    settings = Settings(topic_partitions=6, reco_shards=2)
    topics = Topics.from_settings(settings)
    partitions = {s.name: s.partitions for s in topic_specs(settings)}
    assert {partitions[t] for t in topics.inputs} == {6}
    assert partitions[topics.reco_events] == 2
    assert partitions[topics.training] == partitions[topics.offer_rewards] == 1
    assert partitions[topics.erasures] == 1


def test_min_isr_above_replication_is_refused_naming_both_settings() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(topic_replication=1, topic_min_insync_replicas=2)
    message = str(raised.value)
    assert "CDPULSE_TOPIC_MIN_INSYNC_REPLICAS=2" in message
    assert "CDPULSE_TOPIC_REPLICATION=1" in message
