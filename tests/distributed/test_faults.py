"""Faults of the whole distributed stack while events flow, each ending with the whole
store compared to the oracle: the worker-kill and rebalance tests of tests/chaos and the
Redis master kill and slot migration of tests/cluster, collected again on three brokers
and a Redis Cluster (``make distributed``; the broker kill is ``test_broker_kill``)."""

from tests.chaos.test_rebalance import test_workers_joining_and_leaving_mid_stream
from tests.chaos.test_worker_kills import test_workers_killed_mid_stream_leave_exact_profiles
from tests.cluster.test_faults import (
    test_a_master_killed_mid_stream_is_replaced_by_its_replica_and_nothing_is_lost,
    test_slots_migrated_mid_stream_leave_exact_profiles,
)

__all__ = [
    "test_a_master_killed_mid_stream_is_replaced_by_its_replica_and_nothing_is_lost",
    "test_slots_migrated_mid_stream_leave_exact_profiles",
    "test_workers_joining_and_leaving_mid_stream",
    "test_workers_killed_mid_stream_leave_exact_profiles",
]
