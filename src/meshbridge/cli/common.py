"""Options, help layout and error mapping shared by every command.

Output follows kubectl: a command's results (what it wrote, found or changed) go to stdout,
everything else (progress, notes, warnings, errors) to stderr.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console

from meshbridge import plural
from meshbridge.errors import InvalidInput, MeshbridgeError

DEFAULT_STATE = ".meshbridge/state.db"

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


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


def short_time(iso: str) -> str:
    """An ISO time as a status table shows it: ``2026-11-28 06:51:39`` (UTC, whole seconds)."""
    return iso.replace("T", " ").split(".")[0].removesuffix("+00:00")


def print_object_states(rows: Iterable[tuple[str, str, str, str]]) -> None:
    """Every object of every cluster's last result (``status --objects``), from the records
    the store or the server keeps: (cluster, object, state, reason) rows."""
    from rich.table import Table

    detail = Table(box=None, pad_edge=False)
    for col in ("CLUSTER", "OBJECT", "STATE"):
        detail.add_column(col, no_wrap=True)
    detail.add_column("REASON", overflow="fold")
    for row in rows:
        detail.add_row(*row)
    out_console.print(detail)


FilesOption = Annotated[
    list[str],
    typer.Option(
        "-f",
        "--filename",
        metavar="FILE|DIR|-",
        help="Intent documents: a YAML file, a directory (the *.yaml / *.yml files directly in "
        "it; not its subdirectories) or - for standard input. Repeat for more.",
        show_default=False,
    ),
]
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="PATH",
        envvar="MESHBRIDGE_STATE",
        show_envvar=True,
        help=f"State store (a SQLite file) keeping VIPs and the PKI between runs "
        f"(default: {DEFAULT_STATE}).",
        show_default=False,
    ),
]


def state_path(option: str | None) -> str:
    return option or os.environ.get("MESHBRIDGE_STATE") or DEFAULT_STATE


@contextmanager
def errors_mapped() -> Iterator[None]:
    """Print meshbridge errors the way users expect and exit with the documented code."""
    try:
        yield
    except InvalidInput as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False)
        count = len(exc.problems)
        err_console.print(
            f"error: {plural.count(count, 'problem')} found; nothing was written",
            style="red",
            markup=False,
        )
        raise typer.Exit(2) from None
    except MeshbridgeError as exc:
        err_console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
