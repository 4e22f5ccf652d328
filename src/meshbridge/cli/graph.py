"""``meshbridge graph``: the picture of the mesh as one HTML file or an SVG, from intent files.

No server and no state store: the intents are checked as ``validate`` checks them (bad input:
every problem on stderr, exit 2, nothing written), their graph is computed by the same use case
``meshbridge serve`` answers ``GET /api/v1/graph`` with, and drawn by ``meshbridge.ui``. States
are all "not applied": a file is for reviewing intents, not for watching clusters.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from meshbridge import plural
from meshbridge.cli.common import FilesOption, err_console, errors_mapped, out_console
from meshbridge.cli.progress import shown
from meshbridge.errors import MeshbridgeError
from meshbridge.usecases.sources import read_sources

FORMATS = {".html": "html", ".htm": "html", ".svg": "svg"}


def graph(
    files: FilesOption,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="The file to write: FILE.html (one self-contained page: open it in a browser, "
            "no server or network needed) or FILE.svg (the first view, for documentation).",
            show_default=False,
        ),
    ],
) -> None:
    """Draw the mesh: clusters by region, app instances, calls, ingress and egress.

    The same picture as the page of meshbridge serve (/ui/), from intent files. The same intents
    give the same bytes. Exit 2 with every problem when the intents are not valid.
    """
    kind = FORMATS.get(output.suffix.lower())
    if kind is None:
        err_console.print(f"error: {output}: give a file name ending in .html or .svg",
                          style="red", markup=False)
        raise typer.Exit(2)
    with errors_mapped(), shown(err_console) as progress:
        from meshbridge import ui
        from meshbridge.usecases import graph as graph_service
        from meshbridge.usecases import render as render_service

        checked = render_service.validate(read_sources(files), progress)
        progress.stage("drawing the mesh")
        drawn = ui.with_layout(graph_service.of_snapshot(checked))
        data = ui.standalone_html(drawn) if kind == "html" else ui.svg(drawn)
        _write(output, data)
    s = drawn.summary
    out_console.print(
        f"wrote {output}: {plural.count(s.clusters, 'cluster')}, "
        f"{plural.count(s.instances, 'app instance')}, {plural.count(s.edges, 'call')}",
        markup=False,
    )


def _write(path: Path, data: bytes) -> None:
    """``data`` in ``path``, whole or not at all (a temporary file renamed over it)."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise MeshbridgeError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
