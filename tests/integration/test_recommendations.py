"""Recommendations end to end: learned from the stream, served and published live.

The recommender is sharded by customer (one shard per reco-events partition); the learner
learns each shard in its partition's order and publishes the lists, the api serves every
shard's newest snapshot merged. The test learns the same records, shard by shard, in
process, and must be served exactly what that recommender recommends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import redis.asyncio as aioredis

from cdpulse.contract.outputs import RecommendationList
from cdpulse.models.reco import Context, Recommender
from cdpulse.models.reco_stream import ItemEvent, RecoSnapshot, learn_records
from cdpulse.privacy.seal import Seal
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from cdpulse.store.models import RecoShards
from tests.integration.conftest import Env, caught_up, consume_all, drained, wait_until
from tests.oracle import pseudonym_id

SHARDS = 2


def published_snapshot(env: Env) -> RecoSnapshot | None:
    """Every shard's newest published snapshot, merged as the api serves them."""

    async def read() -> RecoSnapshot | None:
        client = aioredis.Redis.from_url(env.settings.redis_url)
        try:
            shards = RecoShards(client, env.settings.redis_prefix, Seal.from_settings(env.settings))
            await shards.refresh()
            return shards.get()
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_recommendations_are_learned_live_served_and_published(env: Env) -> None:
    events = list(Shop(customers=120, days=20, seed=8).events())
    # A snapshot after every learner batch: the last one then holds every item event.
    roles = env.roles(
        learner=True, CDPULSE_RECO_SNAPSHOT_SECONDS="0.01", CDPULSE_RECO_SHARDS=str(SHARDS)
    )
    learner = roles.learning
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")
    topic = env.settings.topic_reco_events
    # The learner commits a batch of item events only after learning it, publishing its
    # lists and its shard's snapshot: once it has caught up, all of them are out.
    wait_until(lambda: caught_up(env.settings, topic), 120, "the recommender's learner to catch up")
    learned = learner.metric("cdpulse_reco_events_learned_total")

    # The same records, shard by shard in their partition's order, in process.
    records = sorted(
        consume_all(env.settings, topic, int(learned)), key=lambda r: (r.partition, r.offset)
    )
    assert {r.partition for r in records} == set(range(SHARDS)), "every shard has customers"
    shards = [Recommender() for _ in range(SHARDS)]
    items: list[ItemEvent] = []
    for shard, recommender in enumerate(shards):
        mine = [(r.offset, r.value) for r in records if r.partition == shard]
        outcome = learn_records(recommender, mine)
        assert not outcome.malformed and not outcome.forgotten
        items += outcome.items
    replay = Recommender.merge(shards)
    item_types = {"product_viewed", "product_added", "order_completed"}
    # Customers who withheld personalization (or analytics) teach the recommender nothing.
    assert learned == len(items) and 0 < len(items) <= sum(e["type"] in item_types for e in events)
    # The topic knows customers by pseudonym only (README: Privacy and security).
    named = {
        pseudonym_id(i): i
        for e in events
        for i in (e.get("customer_id"), e.get("anonymous_id"))
        if i
    }
    assert {i.customer_id for i in items} <= set(named)
    for record in records:
        assert not any(i.encode() in record.value for i in named.values()), record.value[:200]

    # Served: every shard's last snapshot holds all it learned, and the api serves them.
    snapshot = published_snapshot(env)
    assert snapshot is not None
    assert snapshot.recommender.model_version == replay.model_version
    newest = f"{replay.model_version}.s{snapshot.version}"
    customers = sorted(
        {named[i.customer_id] for i in items if named[i.customer_id].startswith("cust-")}
    )
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        # Customers who withheld personalization get no recommendations (451).
        customers = [
            c
            for c in customers
            if http.get(f"/v1/profiles/{c}").json()["consent"]["personalization"] is not False
        ]
        assert customers

        def served_version() -> str:
            response = http.get(f"/v1/profiles/{customers[0]}/recommendations")
            return str(response.json().get("model_version"))

        wait_until(lambda: served_version() == newest, 60, "the newest snapshots to be served")
        for customer in customers:
            response = http.get(f"/v1/profiles/{customer}/recommendations", params={"k": 10})
            profile = http.get(f"/v1/profiles/{customer}").json()
            if profile["consent"]["personalization"] is False:  # withdrawn after browsing
                assert response.status_code == 451, customer
                continue
            served = response.json()
            assert len(served["items"]) == 10 and all(i["reason"] for i in served["items"])
            wanted = replay.recommend(pseudonym_id(customer), Context.from_view(profile), k=10)
            assert [(i["product_id"], i["reason"]) for i in served["items"]] == [
                (r.product_id, r.reason) for r in wanted
            ], customer
        product = items[0].items[0].product_id
        similar = http.get(f"/v1/products/{product}/similar", params={"k": 5}).json()
        assert [i["product_id"] for i in similar["items"]] == [
            r.product_id for r in replay.similar(product, k=5)
        ]
        assert http.get(f"/v1/profiles/{customers[0]}/recommendations?k=0").status_code == 400
        assert http.get("/v1/profiles/nobody/recommendations").status_code == 404

    lists = learner.metric("cdpulse_recommendation_lists_total")
    published = [
        RecommendationList.model_validate_json(r.value)
        for r in consume_all(env.settings, env.settings.topic_recommendations, int(lists))
    ]
    assert published and lists == len(published)
    item_ids = {i.event_id for i in items}
    assert all(p.caused_by in item_ids and p.items for p in published)
    document: dict[str, Any] = json.loads(published[0].model_dump_json())
    assert document["customer_id"] in named.values()
