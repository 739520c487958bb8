"""Input data quality on the real Kafka, Redis and a worker: a simulated shop whose
producer breaks (page titles sent null, prices in cents, the clickstream stalling) is fed
through the worker, and its ``/metrics`` equal what the JSON events sent say, counted
apart from the monitor (README: Operating it, Input data quality)."""

from __future__ import annotations

import math

from cdpulse.producer import Producer
from tests.integration.conftest import Env, drained, wait_until
from tests.unit.test_input_quality import absent, amounts, newest, shop_events, volume


def test_a_broken_producer_shows_on_the_worker_metrics(env: Env) -> None:
    worker = env.worker(CDPULSE_INPUT_SAMPLE="1")
    events = shop_events()
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 120, "the worker to apply the shop")
    settings = env.settings
    topics = {
        "clickstream": settings.topic_clickstream,
        "transactions": settings.topic_transactions,
        "customers": settings.topic_customers,
    }

    def metric(name: str, **labels: str) -> float:
        return worker.metric(name, labels)

    # titles sent null from day 2 on
    nulls = absent(events, "page_viewed", "title")
    assert nulls > 0
    assert (
        metric(
            "cdpulse_input_optional_fields_total", type="page_viewed", field="title", state="absent"
        )
        == nulls
    )
    # prices in cents from day 2 on: every amount is in the distribution
    for kind, name in [("order_completed", "revenue"), ("product_viewed", "price")]:
        values = amounts(events, kind, name)
        labels = {"type": kind, "field": name}
        assert metric("cdpulse_input_value_count", **labels) == len(values)
        assert math.isclose(metric("cdpulse_input_value_sum", **labels), sum(values), rel_tol=1e-9)
        over = sum(v > 1000 for v in values)
        assert over > 0
        assert metric("cdpulse_input_value_bucket", **labels, le="1000.0") == len(values) - over
    # the clickstream stalled: its newest event is older, and its last hour reads 0
    found = newest(events, topics)
    for topic, at in found.items():
        assert metric("cdpulse_input_newest_event_seconds", topic=topic) == at / 1000
    assert found[topics["clickstream"]] < found[topics["transactions"]]
    for (topic, kind), ratio in volume(events, topics).items():
        gauge = metric("cdpulse_input_volume_ratio", topic=topic, type=kind)
        assert math.isnan(gauge) if ratio is None else math.isclose(gauge, ratio), (topic, kind)
    assert (
        metric("cdpulse_input_volume_ratio", topic=topics["clickstream"], type="page_viewed") == 0
    )
    assert metric("cdpulse_input_lateness_seconds_count") == len(events)
