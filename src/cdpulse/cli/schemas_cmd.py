"""``cdpulse schemas``: write one JSON Schema per event type into a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schemas", help="write the JSON Schemas of the event contract")
    parser.add_argument(
        "--out", type=Path, default=Path("schemas"), help="folder (default: schemas)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cdpulse.contract.schemas import write

    for path in write(args.out):
        print(path)
    return 0
