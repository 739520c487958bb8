"""What else the roles keep in Redis, on a Redis Cluster: erasure, admin merges, identity
links, experiments, segments, trigger tallies, KPI counters, expiry and a rebuild from
Kafka, each the test of one Redis (tests/integration) collected again with
``redis+cluster://``."""

from tests.integration.test_customer_merge import test_an_admin_merge_through_the_engine
from tests.integration.test_experiments import test_exposures_and_conversions_match_the_stream
from tests.integration.test_identity import test_identity_rules_through_the_engine
from tests.integration.test_kpis import (
    test_kpis_equal_an_independent_count_after_a_kill_and_a_replay,
)
from tests.integration.test_privacy import (
    test_erased_customers_leave_nothing_readable_in_redis_or_the_output_topics,
    test_erasure_scans_nothing_and_leaves_no_identity_entry_claim_or_membership,
    test_inactive_profiles_and_identity_links_expire,
)
from tests.integration.test_rebuild import (
    test_rebuild_from_kafka_gives_the_live_profiles_key_by_key,
)
from tests.integration.test_segments import (
    test_segment_transitions_follow_the_oracle_round_by_round,
)
from tests.integration.test_triggers import (
    test_uplift_tallies_are_claimed_once_with_the_save_and_read_by_the_trigger_store,
)

__all__ = [
    "test_an_admin_merge_through_the_engine",
    "test_erased_customers_leave_nothing_readable_in_redis_or_the_output_topics",
    "test_erasure_scans_nothing_and_leaves_no_identity_entry_claim_or_membership",
    "test_exposures_and_conversions_match_the_stream",
    "test_identity_rules_through_the_engine",
    "test_inactive_profiles_and_identity_links_expire",
    "test_kpis_equal_an_independent_count_after_a_kill_and_a_replay",
    "test_rebuild_from_kafka_gives_the_live_profiles_key_by_key",
    "test_segment_transitions_follow_the_oracle_round_by_round",
    "test_uplift_tallies_are_claimed_once_with_the_save_and_read_by_the_trigger_store",
]
