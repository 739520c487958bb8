"""``cdpulse rebuild``: rebuild every profile from the Kafka history into an empty prefix.

The erasure ledger's topic is loaded first, into the ledger the replay is screened with
(``CDPULSE_REDIS_PREFIX``'s, in the Redis written to) and into the target prefix's, so a
rebuild into an empty Redis keeps erased customers erased (``ingest.ledger``).

Stop the workers that write into the target prefix first: a worker applying a newer
message of a customer before the rebuild reaches the older ones would make the rebuild
skip those as re-deliveries. Rebuilding into a new prefix while the workers keep
serving the old one is always safe.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from typing import TYPE_CHECKING, Any

from cdpulse.settings import Settings, get_settings

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from cdpulse.ingest.rebuild import RebuildReport
    from cdpulse.store.redis import RedisProfileStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rebuild",
        help="rebuild all profiles from the Kafka history into an empty Redis key prefix",
        description=(
            "Replay the input topics from their first retained offset through the worker's "
            "batch processor into an empty Redis key prefix, then print what was written."
        ),
    )
    parser.add_argument(
        "--target-prefix",
        help="Redis key prefix to write, which must hold no keys (default: CDPULSE_REDIS_PREFIX)",
    )
    parser.add_argument("--redis-url", help="Redis to write to (default: CDPULSE_REDIS_URL)")
    parser.add_argument(
        "--batch-size", type=int, help="messages applied per batch (default: CDPULSE_BATCH_SIZE)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from cdpulse.cli.main import CliError
    from cdpulse.ingest.rebuild import RebuildError

    settings = get_settings()
    prefix = args.target_prefix or settings.redis_prefix
    redis_url = args.redis_url or settings.redis_url
    batch_size = args.batch_size or settings.batch_size
    if batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {batch_size}")
    try:
        return asyncio.run(_rebuild(settings, prefix, redis_url, batch_size))
    except RebuildError as exc:
        raise CliError(str(exc)) from exc
    except KafkaError as exc:
        raise CliError(
            f"reading the history from Kafka at {settings.kafka_bootstrap} failed ({exc}); "
            "start it with `make stack-up` or set CDPULSE_KAFKA_BOOTSTRAP"
        ) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise CliError(
            f"cannot reach Redis at {redis_url} ({exc}); start it with `make stack-up` "
            "or pass --redis-url"
        ) from exc


async def _rebuild(settings: Settings, prefix: str, redis_url: str, batch_size: int) -> int:
    from datetime import timedelta

    from cdpulse.connections import redis_options
    from cdpulse.contract.partitions import partition_of
    from cdpulse.contract.topics import Topics
    from cdpulse.ingest.ledger import load_ledger, open_ledger_topic
    from cdpulse.ingest.rebuild import History, rebuild
    from cdpulse.ops.progress import Reporter
    from cdpulse.pipeline.batch import ProfilePipeline
    from cdpulse.pipeline.memory import MemoryOutlet
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.profile.rules import Rules
    from cdpulse.store.keys import Keys
    from cdpulse.store.ledger import RedisLedger
    from cdpulse.store.redis import RedisProfileStore
    from cdpulse.store.state import RedisState

    store = RedisProfileStore.from_url(redis_url, prefix, **redis_options(settings))
    try:
        await _refuse_unless_empty(store, redis_url)
        rules = Rules.from_settings(settings)
        # The ledger before any event: the replay is screened with it from the first batch.
        ledgers = [
            RedisLedger(store.client, Keys(p).erasure_ledger, rules.traits.pseudonymizer)
            for p in dict.fromkeys((settings.redis_prefix, prefix))
        ]
        erasures = Topics.from_settings(settings).erasures
        connect = functools.partial(history_consumer, settings, "rebuild")
        with (
            open_ledger_topic(connect, erasures) as ledger_topic,
            Reporter("erasure ledger", ledger_topic.total) as progress,
        ):
            ledger = await load_ledger(ledger_topic, ledgers, progress.advance)
        for problem in ledger.problems:
            print(f"warning: {problem}", file=sys.stderr)
        topics = Topics.from_settings(settings).inputs
        with History(connect, topics) as history:
            for part in history.truncated:
                print(
                    f"warning: {part.topic}:{part.partition} starts at offset {part.start}: "
                    "retention deleted older messages, so the profiles miss them",
                    file=sys.stderr,
                )
            partitions = settings.topic_partitions
            state = RedisState(
                store.client,
                prefix,
                pseudonym=rules.traits.pseudonymizer.of_id,
                shard_of=lambda profile_id: partition_of(profile_id, partitions),
                # Erased customers stay erased: the history is screened with the live
                # prefix's ledger (CDPULSE_REDIS_PREFIX, in the Redis written to).
                ledger_prefix=settings.redis_prefix,
            )
            await state.load_scripts()
            # Profiles only: outputs were published live; the records are dropped here.
            pipeline = ProfilePipeline(
                state,
                MemoryOutlet(keep=False),
                Stages(Engine(rules, Models())),
                partitions=len(topics) * partitions,
                max_bytes=settings.max_event_bytes,
                max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
                erasures=_eraser(settings, store, rules),
            )
            with Reporter("rebuild", history.total) as progress:
                report = await rebuild(history, pipeline, batch_size, progress.advance)
        print(await _summary(store, report, len(history.ranges)))
        print(f"erasure ledger: {ledger.loaded} erased ids loaded from {erasures}")
    finally:
        await store.close()
    return 0


def _eraser(settings: Settings, store: RedisProfileStore, rules: Any) -> Any:
    """The erasure requests in the history are carried out again in the target prefix,
    and recorded in the live prefix's ledger (where they are already)."""
    from cdpulse.contract.partitions import partition_of
    from cdpulse.store.erasure import Eraser
    from cdpulse.store.keys import Keys
    from cdpulse.store.ledger import RedisLedger

    pseudonyms = rules.traits.pseudonymizer
    ledger = RedisLedger(store.client, Keys(settings.redis_prefix).erasure_ledger, pseudonyms)
    partitions = settings.topic_partitions
    return Eraser(
        store.client,
        store.keys.prefix,
        ledger,
        pseudonyms,
        rules.traits.personal,
        shard_of=lambda profile_id: partition_of(profile_id, partitions),
    )


async def _refuse_unless_empty(store: RedisProfileStore, redis_url: str) -> None:
    from cdpulse.cli.main import CliError

    pattern = store.keys.pattern
    async for key in store.client.scan_iter(match=pattern, count=1000):
        if key.decode("utf-8", "backslashreplace") == store.keys.erasure_ledger:
            continue  # the ledger is what keeps erased customers out of the rebuild
        raise CliError(
            f"Redis prefix {store.keys.prefix!r} at {redis_url} already holds keys (for example "
            f"{key.decode('utf-8', 'backslashreplace')!r}); rebuild writes only into an empty "
            "prefix: choose a new one with --target-prefix, or delete the keys matching "
            f"{pattern!r} first"
        )


def history_consumer(settings: Settings, command: str) -> KafkaConsumer:
    """A consumer in no group, for ``cdpulse <command>``: it commits nothing and takes no
    partition from a worker (credentials and TLS from the settings)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from cdpulse.cli.main import CliError
    from cdpulse.connections import kafka_options

    try:
        return KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id=f"{settings.app_id}-{command}",
            group_id=None,
            enable_auto_commit=False,
            **kafka_options(settings),
        )
    except KafkaError as exc:
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); start it with "
            "`make stack-up` or set CDPULSE_KAFKA_BOOTSTRAP"
        ) from exc


async def _summary(store: RedisProfileStore, report: RebuildReport, partitions: int) -> str:
    aliases = 0
    async for _ in store.client.scan_iter(match=store.keys.pattern + ":alias", count=1000):
        aliases += 1
    profiles = await store.count()
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(report.rejected.items()))
    return (
        f"rebuilt prefix {store.keys.prefix!r} from {report.messages} messages in {partitions} "
        f"partitions in {report.seconds:.1f}s: {report.applied} events applied, "
        f"{report.duplicates} duplicates, {report.merges} visitor merges, "
        f"{sum(report.rejected.values())} dead letters{f' ({rejected})' if rejected else ''}; "
        f"{profiles} profiles, {aliases} aliases"
    )
