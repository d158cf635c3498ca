"""Progress of a pass while `mixsync sync` works: a live line on a terminal (rich), plain lines
otherwise (a log, a CI job). Counts come from the pass row, which the scan and the runs commit
page by page, so what is shown is what is committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mixsync_dagster.state import PassRow

PLAIN_EVERY_FILES = 5_000
"""Without a terminal, a line each time this many more files were listed..."""
PLAIN_EVERY_SECONDS = 30.0
"""... or this long after the last line, whichever comes first."""
POLL_SECONDS = 0.5
"""How often the pass row is read."""


class PassProgress:
    """Call `poll()` often (it reads the pass row at most every POLL_SECONDS)."""

    def __init__(
        self,
        name: str,
        read: Callable[[], PassRow | None],
        *,
        stream: TextIO | None = None,
        force_terminal: bool | None = None,
    ):
        self.name = name
        self.read = read
        self.console = Console(file=stream, stderr=stream is None, force_terminal=force_terminal)
        self.live = self.console.is_terminal
        self.t0 = time.monotonic()
        self.base: int | None = None
        self.last_poll = 0.0
        self.last_line_at = self.t0
        self.last_line_listed = 0
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> PassProgress:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(f"{self.name}: starting", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            return
        # Plain lines end with where the pass got to, unless the last line said it already.
        p = self.read()
        if p is not None and p.listed != self.last_line_listed:
            self._print(self.text(p), p.listed)

    def text(self, p: PassRow) -> str:
        """One line: listed, synced, excluded, failed, rate, elapsed."""
        elapsed = time.monotonic() - self.t0
        if self.base is None:
            self.base = p.listed
        rate = (p.listed - self.base) / elapsed if elapsed > 0 else 0.0
        return (
            f"{self.name}: pass {p.pass_no}: listed {p.listed:,}, synced {p.synced:,}, "
            f"excluded {p.excluded:,}, failed {p.failed:,}, {rate:,.0f} files/s, "
            f"{elapsed:.0f} s elapsed"
        )

    def poll(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_poll < POLL_SECONDS:
            return
        self.last_poll = now
        p = self.read()
        if p is None:
            return
        line = self.text(p)
        if self._progress is not None:
            self._progress.update(self._task, description=line)
            return
        crossed = p.listed // PLAIN_EVERY_FILES > self.last_line_listed // PLAIN_EVERY_FILES
        if crossed or now - self.last_line_at >= PLAIN_EVERY_SECONDS:
            self._print(line, p.listed)

    def _print(self, line: str, listed: int) -> None:
        self.console.print(line, highlight=False, soft_wrap=True)
        self.last_line_at = time.monotonic()
        self.last_line_listed = listed
