"""``cdpulse``: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cdpulse.settings import ConfigurationError

# Imported lazily so that ``cdpulse schemas`` does not pay for faust and river.
SUBCOMMANDS: tuple[str, ...] = (
    "cdpulse.cli.worker_cmd",
    "cdpulse.cli.produce_cmd",
    "cdpulse.cli.simulate_cmd",
    "cdpulse.cli.import_cmd",
    "cdpulse.cli.schemas_cmd",
    "cdpulse.cli.profile_cmd",
    "cdpulse.cli.topics_cmd",
    "cdpulse.cli.settings_cmd",
    "cdpulse.cli.evaluate_cmd",
    "cdpulse.cli.bench_cmd",
    "cdpulse.cli.rebuild_cmd",
    "cdpulse.cli.redis_acl_cmd",
    "cdpulse.cli.export_cmd",
    "cdpulse.cli.audit_cmd",
)


class CliError(Exception):
    """A user error: the message names the input and the fix; exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdpulse", description="Real-time customer-data and personalization engine."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (CliError, ConfigurationError) as exc:
        print(f"cdpulse {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
