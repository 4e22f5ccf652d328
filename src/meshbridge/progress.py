"""How a long use case tells its caller how far it got, without knowing who listens.

A render of a thousand clusters takes a minute; the CLI shows its stages on a terminal (and
nothing when its output is not one), a test or the server passes nothing. The use case names a
stage and, when it can count them, how many steps it has; then it reports steps as they are
done, from any thread.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def stage(self, description: str, total: int | None = None) -> None:
        """A new stage begins (the previous one is over): ``total`` steps, or None for one that
        is not counted."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current stage are done. Safe to call from any thread."""


class Silent:
    """A :class:`Progress` that tells no one."""

    def stage(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


SILENT = Silent()
