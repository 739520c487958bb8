"""Sealed model snapshots on a real Redis: what a role unpickles is only what a holder
of the deployment's key published (``privacy.seal``, ``store.models``)."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path

import redis.asyncio as aioredis

from cdpulse.offers.bandit import OfferPolicy, OfferSnapshot
from cdpulse.ops import metrics
from cdpulse.privacy.seal import Seal
from cdpulse.store.keys import Keys
from cdpulse.store.models import offer_store
from tests.integration.conftest import Env


class _Payload:
    """A pickle that runs code when loaded: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        return (os.open, (str(self.marker), os.O_CREAT | os.O_WRONLY))


def refused(model: str) -> float:
    return metrics.SNAPSHOTS_REFUSED.labels(model)._value.get()


def test_a_snapshot_not_sealed_by_the_key_is_never_unpickled_and_is_replaced(
    env: Env, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    key = Keys(env.name).offer_model
    seal = Seal.from_settings(env.settings)

    async def main() -> None:
        client = aioredis.Redis.from_url(env.settings.redis_url)
        try:
            # Someone with write access to Redis plants a pickle that runs code, under a
            # version far ahead of the learner's.
            planted = pickle.dumps(_Payload(marker))
            await client.hset(key, mapping={"version": 99, "blob": planted})
            store = offer_store(client, env.name, seal)
            before = refused("OfferSnapshot")
            assert await store.load() is None
            assert await store.refresh() is False and store.get() is None
            assert not marker.exists(), "the planted pickle ran"
            assert refused("OfferSnapshot") == before + 2
            # Sealed by another key is no better than not sealed.
            other = Seal(b"not this deployment's key")
            await client.hset(key, "blob", other.close(planted))
            assert await store.load() is None and not marker.exists()

            # The learner's next snapshot replaces it, whatever version it claimed.
            snapshot = OfferSnapshot(1, OfferPolicy(0.1), 0)
            assert await offer_store(client, env.name, seal).publish(snapshot)
            reader = offer_store(client, env.name, seal)
            assert await reader.refresh() is True
            loaded = reader.get()
            assert loaded is not None and loaded.version == 1
            # And a stale one does not replace a sealed newer one.
            assert not await offer_store(client, env.name, seal).publish(
                OfferSnapshot(0, OfferPolicy(0.1), 0)
            )
        finally:
            await client.aclose()

    asyncio.run(main())
