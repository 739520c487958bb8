"""``cdpulse profile ID``: print a profile as the HTTP API serves it."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from cdpulse.settings import get_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("profile", help="print one profile (read from Redis)")
    parser.add_argument("id", help="customer_id or anonymous_id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from cdpulse.cli.main import CliError
    from cdpulse.connections import redis_options
    from cdpulse.models.churn.scoring import profile_document
    from cdpulse.models.health import HealthPolicy, assess_drift
    from cdpulse.models.personas_learner import persona_of
    from cdpulse.privacy.seal import Seal
    from cdpulse.profile.rules import Rules
    from cdpulse.store.drift import RedisDriftStore
    from cdpulse.store.models import RedisClvStore, churn_store, persona_store
    from cdpulse.store.redis import RedisProfileStore

    settings = get_settings()

    async def fetch() -> dict[str, Any] | None:
        store = RedisProfileStore.from_url(
            settings.redis_url, settings.redis_prefix, **redis_options(settings)
        )
        try:
            profile = await store.get(args.id)
            if profile is None:
                return None
            seal = Seal.from_settings(settings)
            snapshot = await churn_store(store.client, settings.redis_prefix, seal).load()
            clv = RedisClvStore(store.client, settings.redis_prefix, seal)
            await clv.refresh()
            as_of = await store.watermark()
            # lifetime value's health, judged as the api judges it (app/served_drift.py)
            drift = await RedisDriftStore(store.client, settings.redis_prefix).reports(["clv"])
            health = assess_drift(drift.get("clv"), HealthPolicy.from_settings(settings))
            document = profile_document(
                profile,
                as_of,
                Rules.from_settings(settings),
                snapshot,
                clv.get(),
                settings.clv_horizon_days,
                health,
            )
            personas = await persona_store(store.client, settings.redis_prefix, seal).load()
            document["persona"] = persona_of(profile, personas)  # as app/views.py
            return document
        finally:
            await store.close()

    try:
        document = asyncio.run(fetch())
    except (RedisConnectionError, OSError) as exc:
        raise CliError(
            f"cannot reach Redis at {settings.redis_url} ({exc}); start it with "
            "`make stack-up` or set CDPULSE_REDIS_URL"
        ) from exc
    if document is None:
        raise CliError(f"no profile for id {args.id!r}")
    print(json.dumps(document, indent=2))
    return 0
