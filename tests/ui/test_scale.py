"""A mesh of 100 clusters in 5 regions and 2,000 servers stays legible: it opens with regions
folded and the calls between them folded into one line per pair, and unfolds a region, then a
cluster, on a click. (How fast it loads is measured by bench/ui.py, not here.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from bench.meshgen import generate
from browser import Browser

from meshbridge.ui.layout import visible_edges
from meshbridge.usecases import graph as graph_uc
from meshbridge.usecases.render import validate
from meshbridge.usecases.sources import read_sources

pytestmark = pytest.mark.slow


def _lines(chromium: Browser) -> list[tuple[str, str, int]]:
    return sorted((a, b, int(n)) for a, b, n in chromium.js(
        "return Array.from(document.querySelectorAll('path.edge')).map(function (p) {"
        " return [p.getAttribute('data-source'), p.getAttribute('data-target'),"
        " p.getAttribute('data-count')]; });"))


def _click(chromium: Browser, selector: str) -> None:
    chromium.js("document.querySelector(arguments[0])"
                ".dispatchEvent(new MouseEvent('click', {bubbles: true}))", selector)


def test_a_large_mesh_opens_folded_and_unfolds_on_click(
        tmp_path: Path, chromium: Browser, cli: Callable[..., object]) -> None:
    mesh = tmp_path / "in" / "mesh.yaml"
    mesh.parent.mkdir()
    mesh.write_text(yaml.safe_dump_all(generate(clusters=100, servers=2000, regions=5)))
    out = tmp_path / "mesh.html"
    result = cli("graph", "-f", str(mesh.parent), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    graph = graph_uc.of_snapshot(validate(read_sources([str(mesh.parent)])))
    assert len(graph.clusters) == 100 and len(graph.edges) > 5000

    chromium.open(out.as_uri())
    chromium.wait(lambda: chromium.js("return !!document.querySelector('#picture svg.mesh')"),
                  "the picture", timeout=30)
    assert sorted(chromium.ids("g.region")) == [f"region:r{i}" for i in range(5)]
    assert chromium.ids("g.cluster") == [] and chromium.ids("g.inst") == []
    folded = _lines(chromium)
    assert folded == sorted((d.source, d.target, len(d.edges))
                            for d in visible_edges(graph, [], []))
    assert 0 < len(folded) <= 25  # one line per pair of regions, not thousands
    assert chromium.js("return document.querySelectorAll('.edge-label').length") == len(folded)

    _click(chromium, 'g.region[data-id="region:r0"]')
    r0 = [f"cluster:c{i:03d}" for i in range(0, 100, 5)]
    assert sorted(chromium.ids("g.cluster")) == r0
    assert chromium.ids("g.inst") == []
    assert _lines(chromium) == sorted((d.source, d.target, len(d.edges))
                                      for d in visible_edges(graph, [], ["r0"]))

    _click(chromium, 'g.cluster[data-id="cluster:c000"] .cluster-head')
    c000 = next(c for c in graph.clusters if c.name == "c000")
    assert sorted(chromium.ids("g.inst")) == sorted(c000.instances)
    assert _lines(chromium) == sorted((d.source, d.target, len(d.edges))
                                      for d in visible_edges(graph, ["c000"], ["r0"]))
    assert chromium.errors() == []
