"""meshbridge.ui without a browser: the file is self-contained and the same every time, its
data cannot end its element, and the SVG draws the first view."""

from __future__ import annotations

import re

from helpers import EXAMPLES

from meshbridge import ui
from meshbridge.ui import layout
from meshbridge.usecases import graph as graph_uc
from meshbridge.usecases.render import validate
from meshbridge.usecases.sources import read_sources
from meshbridge.wire.graph import MeshGraph


def drawn(example: str = "three-clusters") -> MeshGraph:
    g = graph_uc.of_snapshot(validate(read_sources([str(EXAMPLES / example)])))
    return ui.with_layout(g)


def test_the_file_is_the_same_bytes_for_the_same_intents_and_fetches_nothing() -> None:
    first, again = ui.standalone_html(drawn()), ui.standalone_html(drawn())
    assert first == again
    assert ui.svg(drawn()) == ui.svg(drawn())
    html = first.decode()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "default-src 'none'" in html and "connect-src" not in html  # no request possible
    assert html.count("<script") == 2  # the data (JSON, not run) and the page's one script


def test_the_data_cannot_close_its_element() -> None:
    g = drawn()
    evil = g.intents[0].model_copy(update={"annotations": {"x": "</script><script>alert(1)</script>"}})
    html = ui.standalone_html(g.model_copy(update={"intents": [evil, *g.intents[1:]]})).decode()
    data = html.split('<script type="application/json" id="mesh-data">')[1].split("</script>")[0]
    assert "alert(1)" in data and "<" not in data


def test_small_meshes_start_expanded_large_ones_folded() -> None:
    small = drawn().layout
    assert small is not None and small.expanded_clusters == ["east-1", "east-2", "west-1"]
    assert small.expanded_regions == ["east", "west"]
    svg = ui.svg(drawn()).decode()
    for name in ("east-1", "frontend", "shop.example.com", "api.cards.example.net", "70%"):
        assert name in svg
    lines = layout.visible_edges(drawn(), [], [])  # regions folded: one line per region pair
    assert {(d.source, d.target) for d in lines} == {
        ("ingress:shop.example.com", "region:east"), ("region:east", "region:west"),
        ("region:west", "egress:pay/card-processor")}
