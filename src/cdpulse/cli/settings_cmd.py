"""``cdpulse settings``: every setting, its environment variable and default, as Markdown."""

from __future__ import annotations

import argparse
from typing import Any

from cdpulse.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "settings", help="print every CDPULSE_* variable with its default (Markdown table)"
    )
    parser.set_defaults(func=run)


def table() -> str:
    """The configuration table README embeds (a test keeps the two equal)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        lines.append(f"| `CDPULSE_{name.upper()}` | `{info.default}` | {info.description} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(table())
    return 0
