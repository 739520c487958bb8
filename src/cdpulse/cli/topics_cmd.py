"""``cdpulse topics``: create cdpulse's Kafka topics when they are missing."""

from __future__ import annotations

import argparse
from typing import Any

from cdpulse.settings import get_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("topics", help="create the Kafka topics cdpulse uses")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from cdpulse.cli.main import CliError
    from cdpulse.kafka_admin import ensure_topics

    settings = get_settings()
    try:
        created = ensure_topics(settings)
    except KafkaError as exc:
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); start it with "
            "`make stack-up` or set CDPULSE_KAFKA_BOOTSTRAP"
        ) from exc
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    return 0
