"""``cdpulse worker``: run the Faust app (profile agent and HTTP API)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cdpulse.settings import get_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker", help="run the stream worker and its HTTP API (profiles, collector, metrics)"
    )
    parser.add_argument("--loglevel", default="info", help="faust/worker log level")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cdpulse.app.auth import refusals
    from cdpulse.app.worker import create_app
    from cdpulse.kafka_admin import ensure_topics
    from cdpulse.segments.definitions import DefinitionError

    settings = get_settings()
    logging.basicConfig(level=args.loglevel.upper())
    problems = refusals(settings)
    if problems:
        for problem in problems:
            print(f"cdpulse worker: {problem}", file=sys.stderr)
        return 2
    ensure_topics(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        app, _ = create_app(settings)
    except DefinitionError as exc:
        print(f"cdpulse worker: {exc}", file=sys.stderr)
        return 2
    from faust.worker import Worker

    worker = Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0
