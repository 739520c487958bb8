"""Segment's JavaScript clients for the tests, installed from the npm registry with the
lockfile of ``tests/js`` (``npm ci``) the first time a test asks, and again only when the
lockfile changed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from functools import cache
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "js"


@cache
def installed() -> Path:
    """``tests/js`` with its ``node_modules`` as the lockfile says."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: install Debian's nodejs and npm (.ci/run does)")
    lock = hashlib.sha256((JS / "package-lock.json").read_bytes()).hexdigest()
    stamp = JS / "node_modules" / ".cdpulse-lock"
    if not stamp.is_file() or stamp.read_text() != lock:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=300,
        )
        stamp.write_text(lock)
    return JS
