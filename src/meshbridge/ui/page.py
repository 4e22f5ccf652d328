"""The page around the script: served by ``meshbridge serve``, or one file holding everything.

Served (``/ui/``): a static shell that loads ``graph.css`` and ``graph.js`` from ``/ui/``; the
script asks for a token and reads ``GET /api/v1/graph``. The answers carry :data:`CSP`:
scripts, styles and requests only from the server itself, no inline script.

A file (``meshbridge graph -o mesh.html``): the same shell, style sheet and script inline, and the
graph as JSON in a ``<script type="application/json">`` element the script reads as text. Its own
``Content-Security-Policy`` (a meta element) allows exactly that script and style sheet (by
hash) and no request at all, so the file works opened from disk with the network off and
cannot fetch anything. The JSON is escaped so no text in it can close its element.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources

from meshbridge.ui import layout
from meshbridge.ui.theme import state_css
from meshbridge.wire.graph import MeshGraph

__all__ = ["ASSETS", "CSP", "asset", "index_html", "standalone_html", "with_layout"]

ASSETS: dict[str, str] = {
    "graph.js": "text/javascript; charset=utf-8",
    "graph.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
TITLE = "meshbridge: mesh"


def _read(name: str) -> str:
    return resources.files("meshbridge.ui").joinpath("assets", name).read_text("utf-8")


def asset(name: str) -> bytes:
    """A file the page loads (a key of :data:`ASSETS`); KeyError for any other name."""
    if name not in ASSETS:
        raise KeyError(name)
    text = _read(name)
    if name == "graph.css":
        text += state_css()
    return text.encode()


def index_html() -> bytes:
    """The page ``/ui/`` serves: the shell; everything else comes from ``/ui/`` and the API."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{TITLE}</title>\n'
        '<meta name="referrer" content="no-referrer">\n<link rel="icon" href="data:,">\n'
        '<link rel="stylesheet" href="graph.css">\n<script src="graph.js" defer></script>\n'
        f"</head>\n<body>\n{_read('body.html')}</body>\n</html>\n"
    ).encode()


def with_layout(graph: MeshGraph) -> MeshGraph:
    """``graph`` with its layout."""
    return graph.model_copy(update={"layout": layout.layout(graph)})


def _json_in_html(data: object) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment in it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def standalone_html(graph: MeshGraph) -> bytes:
    """One HTML file showing ``graph`` with nothing to fetch (same graph, same bytes)."""
    if graph.layout is None:
        graph = with_layout(graph)
    css, script = asset("graph.css").decode(), _read("graph.js")
    body = _read("body.html").replace(
        '<button type="button" id="signout" class="link" hidden>sign out</button>\n', "")
    policy = (f"default-src 'none'; script-src 'sha256-{_sha256(script)}'; "
              f"style-src 'sha256-{_sha256(css)}'; img-src data:; base-uri 'none'; "
              "form-action 'none'")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{TITLE}</title>\n<link rel="icon" href="data:,">\n<style>{css}</style>\n'
        f"</head>\n<body>\n{body}"
        '<script type="application/json" id="mesh-data">'
        f"{_json_in_html(graph.to_json())}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    ).encode()
