"""``cdpulse worker``, ``cdpulse learner``, ``cdpulse api``: run one process role.

Each role is its own process and its own faust app (see ``app/base.py``); ``make demo``
starts one of each.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cdpulse.settings import get_settings

ROLES = {
    "worker": "the profile worker: input topics to profiles and their outputs",
    "learner": "the learners (churn, recommender, offers) and the lifetime-value and RFM refits",
    "api": "the HTTP API: profiles, recommendations, the collector, segments, experiments",
}


def register(subparsers: Any) -> None:
    for role, description in ROLES.items():
        parser = subparsers.add_parser(role, help=f"run {description}")
        parser.add_argument("--loglevel", default="info", help="faust/worker log level")
        parser.set_defaults(func=run, role=role)


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from cdpulse.app.auth import refusals
    from cdpulse.kafka_admin import ensure_topics

    settings = get_settings()
    logging.basicConfig(level=args.loglevel.upper())
    problems = refusals(settings)
    if problems:
        for problem in problems:
            print(f"cdpulse {args.role}: {problem}", file=sys.stderr)
        return 2
    ensure_topics(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if args.role == "learner" and settings.learner_nice:
        os.nice(settings.learner_nice)
    try:
        app = _create(args.role, settings)
    except ValueError as exc:  # a segments or rules file that does not check out
        print(f"cdpulse {args.role}: {exc}", file=sys.stderr)
        return 2
    Worker(app, loglevel=args.loglevel).execute_from_commandline()
    return 0


def _create(role: str, settings: Any) -> Any:
    if role == "worker":
        from cdpulse.app.worker import create_worker

        return create_worker(settings)[0]
    if role == "learner":
        from cdpulse.app.learner import create_learner

        return create_learner(settings)[0]
    from cdpulse.app.api import create_api

    return create_api(settings)
