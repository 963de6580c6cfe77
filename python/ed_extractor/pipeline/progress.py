"""A rich progress bar for transfers on a terminal (the pipeline's ProgressReporter there)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ed_extractor.services.file_transfer.base import ProgressReporter, SilentProgress

if TYPE_CHECKING:
    from rich.progress import TaskID


class RichProgress:
    """Draws one bar per transfer on stderr."""

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

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, name: str, total: int | None, already: int = 0) -> None:
        """Open a bar for ``name``."""
        self._progress.start()
        self._task = self._progress.add_task(name, total=total, completed=already)

    def advance(self, count: int) -> None:
        """Move the bar on by ``count`` bytes."""
        if self._task is not None:
            self._progress.advance(self._task, count)

    def stop(self) -> None:
        """Close the bar."""
        self._progress.stop()
        self._task = None


def progress_for_terminal() -> ProgressReporter:
    """A bar when stderr is a terminal, otherwise silence (the JSON logs tell the story)."""
    return RichProgress() if sys.stderr.isatty() else SilentProgress()
