"""The picture of a mesh: the page ``meshbridge serve`` shows at ``/ui/``, the same page as one
self-contained HTML file, and an SVG (``meshbridge graph``).

An edge that knows only the wire: it draws a :class:`~meshbridge.wire.graph.MeshGraph` (made by
``usecases.graph``) and never computes one. ``layout`` decides where things go, in Python, once;
``page`` assembles the HTML around the one script and style sheet in ``assets/`` (package data:
nothing is fetched from anywhere but meshbridge itself); ``svg`` draws the first view as SVG.
"""

from meshbridge.ui.page import ASSETS, CSP, asset, index_html, standalone_html, with_layout
from meshbridge.ui.svg import render as svg

__all__ = ["ASSETS", "CSP", "asset", "index_html", "standalone_html", "svg", "with_layout"]
