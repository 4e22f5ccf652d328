"""The help layout of every command: the one place the CLI leans on typer's internals.

Typer draws help with rich, but it shows type placeholders (``<bool>`` beside a flag, ``<path>``
beside a value) and keeps the source's line breaks inside a docstring paragraph; it offers no
setting for either. So commands and groups are made with ``cls=Command`` / ``cls=Group``
(typer's documented hook), subclasses of ``typer.core.TyperCommand`` / ``TyperGroup`` that
set click's public ``metavar`` on each parameter and reflow the help text. ``typer.core`` is not
documented as public: ``tests/unit/cli/test_helplayout.py`` fails, naming this module, if an
upgrade moves what these classes rely on.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer.core

__all__ = ["Command", "Group"]


def _plain_metavars(params: list[Any]) -> list[Any]:
    """Help without type placeholders: typer shows ``<bool>`` beside a flag (``--help`` too)
    and ``<path>``, ``<int range>`` beside a value. A flag shows nothing; a value without a
    metavar of its own shows its option's name (``--days DAYS``); an argument is named in
    capitals in the usage line (``get KIND [NAME]``). Typer still prints an argument's type in
    its Arguments panel: it offers no setting for that column."""
    for param in params:
        if param is None or param.metavar is not None:
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = param.name.upper()
            continue
        if not isinstance(param, typer.core.TyperOption):
            continue
        if param.is_flag:
            param.metavar = ""
        else:
            longest = max(param.opts, key=len)
            param.metavar = longest.lstrip("-").upper().replace("-", "_")
    return params


def _reflowed(text: str | None) -> str | None:
    """A docstring's paragraphs as running text: typer keeps the single line breaks of every
    paragraph after the first, so a help screen would break lines where the source file does.
    A paragraph that starts with ``\\b`` (click's "keep as written") or holds an indented or
    "- " line is left alone."""
    if not text:
        return text
    first, *rest = inspect.cleandoc(text).split("\n\n")
    kept = [
        p if p.startswith("\b") or any(line[:1] == " " or line.startswith("- ")
                                       for line in p.splitlines()) else " ".join(p.split("\n"))
        for p in rest
    ]
    return "\n\n".join([first, *kept])


class _PlainHelp:
    """Help without type placeholders (see :func:`_plain_metavars`) and without the source's
    line breaks inside a paragraph (:func:`_reflowed`): mixed into commands and groups."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["help"] = _reflowed(kwargs.get("help"))
        super().__init__(*args, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        _plain_metavars([self.get_help_option(ctx)])  # type: ignore[attr-defined]
        return _plain_metavars(super().get_params(ctx))  # type: ignore[misc]


class Command(_PlainHelp, typer.core.TyperCommand):
    """A command with :class:`_PlainHelp`."""


class Group(_PlainHelp, typer.core.TyperGroup):
    """A command group with :class:`_PlainHelp`."""


