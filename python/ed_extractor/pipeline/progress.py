"""Rich progress bars for transfers on a terminal: one live display, one bar per transfer."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ed_extractor.services.file_transfer.base import ProgressReporter, SilentProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class RichProgressBoard:
    """One live display on stderr holding a bar per transfer; concurrent transfers share it."""

    def __init__(self) -> None:
        # Imported here: rich costs ~0.1 s of start-up that a CronJob (no terminal) never needs.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._lock = threading.Lock()
        self._running = 0

    def bar(self) -> RichProgress:
        """A reporter for one more transfer on this display."""
        return RichProgress(self)

    def opened(self) -> None:
        """A bar started: show the display if it is the first."""
        with self._lock:
            self._running += 1
            if self._running == 1:
                self.progress.start()

    def closed(self) -> None:
        """A bar ended: stop the display once no bar is running (finished bars stay drawn)."""
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self.progress.stop()


class RichProgress:
    """The bar of one transfer on a RichProgressBoard (a ProgressReporter)."""

    def __init__(self, board: RichProgressBoard) -> None:
        self._board = board
        self._task: TaskID | None = None
        self._open = False

    def start(self, name: str, total: int | None, already: int = 0) -> None:
        """Open a bar for ``name`` (a retry reuses the bar of the previous attempt)."""
        progress = self._board.progress
        if self._task is None:
            self._task = progress.add_task(name, total=total, completed=already)
        else:
            progress.reset(self._task, total=total, completed=already)
        if not self._open:
            self._open = True
            self._board.opened()

    def advance(self, count: int) -> None:
        """Move the bar on by ``count`` bytes."""
        if self._task is not None:
            self._board.progress.advance(self._task, count)

    def stop(self) -> None:
        """Close the bar."""
        if self._task is not None and self._open:
            self._open = False
            self._board.progress.stop_task(self._task)
            self._board.closed()


def progress_for_terminal() -> Callable[[], ProgressReporter]:
    """A factory of reporters: bars on one display when stderr is a terminal, else silence."""
    return RichProgressBoard().bar if sys.stderr.isatty() else SilentProgress
