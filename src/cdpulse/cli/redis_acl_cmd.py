"""``cdpulse redis-acl``: the ``ACL SETUSER`` line for the Redis user cdpulse runs as.

Printed for ``redis-cli`` (``cdpulse redis-acl | redis-cli -u …`` as an admin), quoted
the way redis-cli reads a line. Secrets from the settings are never printed: a password
comes from the environment variable named by ``--password-env`` and is printed as its
SHA-256 (``#…``); without one the user is created unable to log in.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cdpulse.settings import get_settings

# redis-cli splits a line on whitespace and reads quotes anywhere in a word.
_NEEDS_QUOTES = frozenset(" \t\r\n\"'\\")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "redis-acl",
        help="print the allow-list ACL SETUSER command for the Redis user cdpulse runs as",
        description=(
            "Print the ACL SETUSER command that lets a Redis user run every command cdpulse's "
            "roles and tools send, and nothing else, on the keys under CDPULSE_REDIS_PREFIX."
        ),
    )
    parser.add_argument("--user", help="the ACL user (default: CDPULSE_REDIS_USERNAME)")
    parser.add_argument(
        "--password-env",
        metavar="VARIABLE",
        help="environment variable holding the user's password (printed as its SHA-256)",
    )
    parser.add_argument(
        "--also-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="another key prefix the user may use, e.g. a rebuild's --target-prefix",
    )
    parser.set_defaults(func=run)


def redis_cli_line(args: list[str]) -> str:
    """``args`` as one line redis-cli reads back into the same arguments."""
    return " ".join(_quoted(arg) for arg in args)


def _quoted(arg: str) -> str:
    if arg and not _NEEDS_QUOTES.intersection(arg) and arg.isprintable():
        return arg
    inner = "".join(
        "\\" + c if c in '"\\' else c if c.isprintable() else f"\\x{ord(c):02x}" for c in arg
    )
    return f'"{inner}"'


def run(args: argparse.Namespace) -> int:
    from cdpulse.cli.main import CliError
    from cdpulse.store.acl import hashed_password, setuser_command

    settings = get_settings()
    user = args.user or settings.redis_username
    if not user:
        raise CliError("no user: pass --user NAME or set CDPULSE_REDIS_USERNAME")
    if any(c.isspace() for c in user) or not user.isprintable():
        raise CliError(f"--user {user!r}: Redis user names hold no spaces; choose another")
    password = None
    if args.password_env is not None:
        secret = os.environ.get(args.password_env, "")
        if not secret:
            raise CliError(
                f"--password-env {args.password_env}: the variable is not set or empty; "
                "export it, or leave out --password-env and add a password later"
            )
        password = hashed_password(secret)
    try:
        command = setuser_command(settings, user, password, args.also_prefix)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(redis_cli_line(command))
    if password is None:
        print(
            f"note: no password given (--password-env): nobody can log in as {user!r} until "
            f"you add one with ACL SETUSER {user} >PASSWORD",
            file=sys.stderr,
        )
    return 0
