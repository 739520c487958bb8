"""Next purchase's live quality on real Kafka, Redis and processes equals the replay's.

The lifetime-value fit is pinned: the one ``cdpulse evaluate next-purchase`` fits at its
split, published before the worker starts, and no learner runs to replace it. The worker
then counts at each repeat order exactly what the in-process replay of the same file
counts (README: Next purchase), however Kafka interleaved the topics and cut the batches,
and the api shows every customer the replay's ``next_purchase``.

The shop's consent answers are left out: consent comes on the customers topic and orders
on transactions, so whether an order met a customer's refusal depends on how the worker
interleaved the two (README: Next purchase). Without them, everything counted is read
from order fields that only the transactions topic moves, in each customer's partition
order: the equality is exact by construction, not by a lucky interleaving. Consent's
part is unit-tested (``tests/unit/test_next_purchase_live.py``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from redis import asyncio as aioredis

from cdpulse.contract.partitions import partition_of
from cdpulse.models.clv.lifetime import ClvSnapshot
from cdpulse.models.next_purchase_eval import fit_at_split
from cdpulse.pipeline.next_purchase_replay import replay_next_purchase
from cdpulse.privacy.seal import Seal
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from cdpulse.store.models import RedisClvStore
from tests.integration.conftest import Env, drained, wait_until


def publish(env: Env, fit: ClvSnapshot) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(env.settings.redis_url)
        try:
            store = RedisClvStore(
                client, env.settings.redis_prefix, Seal.from_settings(env.settings)
            )
            assert await store.publish(fit)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_the_workers_next_purchase_error_and_the_apis_scores_equal_the_replays(
    env: Env, tmp_path: Path
) -> None:
    shop = Shop(customers=100, days=60, seed=7).events()
    events = [e for e in shop if e["type"] != "consent_updated"]
    fit = fit_at_split(events)
    assert fit is not None
    publish(env, fit)
    # No RFM segments: their sweep would be a second writer of profiles.
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    roles = env.roles(CDPULSE_SEGMENTS_FILE=str(segments))
    worker, api = roles.worker, roles.api
    wait_until(
        lambda: worker.metric("cdpulse_model_version", {"model": "clv"}) == fit.version,
        60,
        "the worker to load the pinned lifetime-value fit",
    )
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
    lines = [json.dumps(e).encode() for e in events]
    replay = asyncio.run(replay_next_purchase(lines, env.settings, partition_of, fit))
    wait_until(lambda: drained(env.settings), 300, "the worker to drain its topics")

    assert replay.orders > 50
    assert worker.metric("cdpulse_next_purchase_orders_measured_total") == replay.orders
    for predictor in ("model", "own_gap"):
        live = worker.metric("cdpulse_next_purchase_error_seconds_total", {"predictor": predictor})
        assert live == replay.error_seconds[predictor], predictor
    assert replay.error_seconds["model"] != replay.error_seconds["own_gap"]

    customers = sorted(replay.views)
    with httpx.Client(base_url=api.url, timeout=10) as http:

        def shown(customer: str) -> Any:
            return http.get(f"/v1/profiles/{customer}").json()["next_purchase"]

        # The api reads the fit and the newest event time on its own clock: once one
        # scored customer's document is the replay's, it has both.
        probe = next(c for c in customers if replay.views[c] is not None)
        wait_until(
            lambda: shown(probe) == replay.views[probe],
            60,
            "the api to score with the pinned fit as of the newest event",
        )
        mismatched = {
            c: (got, replay.views[c]) for c in customers if (got := shown(c)) != replay.views[c]
        }
    assert not mismatched, f"{len(mismatched)} differ, e.g. {list(mismatched.items())[:2]}"
    scored = [v for v in replay.views.values() if v is not None]
    assert len(scored) > 50 and all(v["reasons"] for v in scored)
