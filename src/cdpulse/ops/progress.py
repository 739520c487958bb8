"""Progress for long CLI work: a live bar on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


class Reporter:
    """Counts work done and shows it on stderr."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._started = time.monotonic()
        self._last_line = self._started
        self._live: Progress | None = None
        self._task: TaskID | None = None
        if sys.stderr.isatty():
            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Reporter:
        if self._live is not None:
            self._live.start()
            self._task = self._live.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._live is not None and self._task is not None:
            self._live.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now - self._last_line >= LOG_EVERY:
            self._last_line = now
            rate = self.done / max(now - self._started, 1e-9)
            of = f"/{self.total}" if self.total else ""
            print(f"{self.label}: {self.done}{of} ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
