"""Progress of a long command on a terminal, and nothing anywhere else.

A use case reports stages and steps through :class:`meshbridge.progress.Progress`; here
they become one transient rich line on stderr (spinner, stage, bar and count when the stage is
counted, elapsed time) that is gone when the command ends. When stderr is not a terminal (a
pipe, a file, CI logs) nothing is shown at all: the use case is handed the silent listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress

from meshbridge.progress import SILENT, Progress

__all__ = ["TerminalProgress", "shown"]


class TerminalProgress:
    """A :class:`Progress` drawn by rich: one line, the current stage only."""

    def __init__(self, bar: RichProgress) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def stage(self, description: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        task = self._task
        if task is not None and steps:
            self._bar.advance(task, steps)  # rich's Progress takes its own lock


@contextmanager
def shown(console: Console) -> Iterator[Progress]:
    """A listener drawing on ``console`` while the block runs if it is a terminal, else one
    that shows nothing."""
    if not console.is_terminal or console.is_dumb_terminal:
        yield SILENT
        return
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        yield TerminalProgress(bar)
