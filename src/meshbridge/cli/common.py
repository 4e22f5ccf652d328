"""Options and error mapping shared by every command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from meshbridge.errors import InvalidInput, MeshbridgeError

DEFAULT_STATE = ".meshbridge/state.db"

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

FilesOption = Annotated[
    list[str],
    typer.Option(
        "-f",
        "--filename",
        metavar="FILE|DIR|-",
        help="Intent documents: a YAML file, a directory (every *.yaml / *.yml in it) or - for "
        "standard input. Repeat for more.",
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
            f"error: {count} problem{'s' if count != 1 else ''} found; nothing was written",
            style="red",
            markup=False,
        )
        raise typer.Exit(2) from None
    except MeshbridgeError as exc:
        err_console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
