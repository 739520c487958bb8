"""The Redis state store on a Redis Cluster: the same tests as on one Redis
(tests/integration/test_state_store.py), each against the cluster's key layout, its
per-shard scripts and its three-step writes (``store/links.py``)."""

from tests.integration.test_state_store import (
    redis_state,
    test_a_batch_begun_on_a_staged_profile_that_was_refused_is_decided_again,
    test_a_cached_profile_is_checked_by_version_and_read_again_when_someone_else_wrote_it,
    test_a_racing_writer_is_answered_by_recomputing_only_its_profiles,
    test_a_shop_leaves_redis_exactly_as_the_memory_store,
    test_admin_merges_leave_redis_exactly_as_the_memory_store,
    test_an_admin_merge_racing_the_merged_customers_worker_loses_no_event,
    test_compare_and_set_refuses_a_moved_version_a_linked_id_and_a_taken_visitor,
    test_scripts_are_loaded_again_after_the_server_forgot_them,
    test_what_a_staged_save_made_due_is_polled_before_its_write_lands,
)

__all__ = [
    "redis_state",
    "test_a_batch_begun_on_a_staged_profile_that_was_refused_is_decided_again",
    "test_a_cached_profile_is_checked_by_version_and_read_again_when_someone_else_wrote_it",
    "test_a_racing_writer_is_answered_by_recomputing_only_its_profiles",
    "test_a_shop_leaves_redis_exactly_as_the_memory_store",
    "test_admin_merges_leave_redis_exactly_as_the_memory_store",
    "test_an_admin_merge_racing_the_merged_customers_worker_loses_no_event",
    "test_compare_and_set_refuses_a_moved_version_a_linked_id_and_a_taken_visitor",
    "test_scripts_are_loaded_again_after_the_server_forgot_them",
    "test_what_a_staged_save_made_due_is_polled_before_its_write_lands",
]
