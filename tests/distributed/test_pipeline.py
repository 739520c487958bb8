"""The pipeline's exactness tests on three brokers and a Redis Cluster at once: the
simulated shop checked by the oracle, a killed worker's redelivery, a visitor merged
while its own worker writes it, and the collector and profile reads of the api (the
tests of tests/integration/test_pipeline.py, collected again with this ``env``)."""

from tests.integration.test_pipeline import (
    test_a_killed_worker_redelivers_and_nothing_is_counted_twice,
    test_a_visitor_written_while_its_customer_merges_it_loses_nothing,
    test_collector_and_profile_endpoint_over_http,
    test_simulated_shop_gives_exact_profiles_and_every_message_is_accounted_for,
)

__all__ = [
    "test_a_killed_worker_redelivers_and_nothing_is_counted_twice",
    "test_a_visitor_written_while_its_customer_merges_it_loses_nothing",
    "test_collector_and_profile_endpoint_over_http",
    "test_simulated_shop_gives_exact_profiles_and_every_message_is_accounted_for",
]
