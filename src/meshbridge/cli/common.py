"""Options, help layout and error mapping shared by every command.

Output follows kubectl: a command's results (what it wrote, found or changed) go to stdout,
everything else (progress, notes, warnings, errors) to stderr.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from meshbridge import plural
from meshbridge.errors import InvalidInput, MeshbridgeError
from meshbridge.excerpt import escaped

if TYPE_CHECKING:
    from meshbridge.store import Store

T = TypeVar("T")

DEFAULT_STATE = ".meshbridge/state.db"

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


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


def read_local(location: str, read: Callable[[Store], T]) -> T | None:
    """``read(store)`` on the local state store at ``location``; None, said so, when there is
    none (a store that does not exist is not created: ``status`` only reads)."""
    from meshbridge.store import open_store, store_exists

    if not store_exists(location):
        err_console.print(f"no state store at {location}: nothing applied yet", markup=False)
        return None
    with errors_mapped():
        store = open_store(location)
        try:
            return read(store)
        finally:
            store.close()


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
        # a message may quote a name from a server's answer or a file: escaped, line by line
        shown = "\n".join(escaped(line, 4096) for line in str(exc).split("\n"))
        err_console.print(f"error: {shown}", style="red", markup=False)
        raise typer.Exit(1) from None
