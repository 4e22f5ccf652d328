"""``meshbridge graph -o mesh.html``: the file opens from disk with the network off and shows
what the served page shows; the SVG puts the clusters where the page does."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from browser import Browser
from helpers import EXAMPLES
from intents import example_yaml
from uiserver import serving

SHOWN = ("g.cluster", "g.inst", "path.edge", "g.outside")


def _drawn(chromium: Browser) -> dict[str, list[str]]:
    chromium.wait(lambda: chromium.js("return !!document.querySelector('#picture svg.mesh')"),
                  "the picture")
    found = {sel: sorted(chromium.ids(sel)) for sel in SHOWN}
    found["labels"] = sorted(chromium.js(
        "return Array.from(document.querySelectorAll('.edge-label, .cluster-title, .inst-name'))"
        ".map(function (e) { return e.textContent; });"))
    found["summary"] = [chromium.text("#summary")]
    return found


def _cells(chromium: Browser) -> dict[str, tuple[float, ...]]:
    return {k: tuple(v) for k, v in chromium.js(
        "var out = {}; document.querySelectorAll('g.cluster, g.outside').forEach(function (g) {"
        " var r = g.querySelector('rect.cell');"
        " out[g.getAttribute('data-id')] = ['x', 'y', 'width', 'height'].map(function (a) {"
        "   return Number(r.getAttribute(a)); }); }); return out;").items()}


def test_the_file_opens_offline_and_shows_what_the_page_shows(
        tmp_path: Path, chromium: Browser, sign_in: Callable[[str, str], None],
        cli: Callable[..., object]) -> None:
    with serving(tmp_path, example_yaml("three-clusters")) as served:
        sign_in(served.url, served.tokens["viewer"])
        served_view = _drawn(chromium)

    out = tmp_path / "mesh.html"
    result = cli("graph", "-f", str(EXAMPLES / "three-clusters"), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    chromium.offline()
    chromium.open(out.as_uri())
    assert _drawn(chromium) == served_view
    assert served_view["g.cluster"] == ["cluster:east-1", "cluster:east-2", "cluster:west-1"]
    assert chromium.errors() == []
    assert [u for u in chromium.requests if not u.startswith(("file:", "data:"))] == []

    svg = tmp_path / "mesh.svg"
    assert cli("graph", "-f", str(EXAMPLES / "three-clusters"), "-o", str(svg)).exit_code == 0
    drawn_svg = {}
    for cluster in ("east-1", "east-2", "west-1"):  # each cell is the rect before its title
        m = re.search(r'<rect class="cell" x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"[^>]*/>'
                      r'\n<circle[^>]*/>\n<text[^>]*>' + cluster + "<", svg.read_text())
        assert m is not None, cluster
        drawn_svg[f"cluster:{cluster}"] = tuple(float(v) for v in m.groups())
    page = _cells(chromium)
    assert {k: page[k] for k in drawn_svg} == drawn_svg
