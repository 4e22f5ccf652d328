"""Where the picture puts each part: bands of cells on a grid, computed once in Python.

The picture is a stack of horizontal *bands*: outside hosts reached through ingress at the top,
then one band per region (``topology.kubernetes.io/region``; clusters without it last), then the
ExternalServices reached by egress. A band is a grid of cells, at most :data:`MAX_COLUMNS` wide,
in name order: a region's cells are its clusters, an outside band's cells its hosts; a band
narrower than the widest steps aside from the one above it (egress to the right), so fewer
calls run along one column. A cluster
cell *expanded* lists its app instances, one row each; *collapsed* it is a tile with counts. A
region collapsed is one tile for all its clusters.

What this module decides — the bands, each cell's band, row and column, each cell's height in
either form, and which clusters and regions start expanded — goes to the reader in
:class:`~meshbridge.wire.graph.GraphLayout`. Only stacking the rows (a row is as tall as its
tallest cell) depends on what the user expands, so the page does that itself
(``assets/graph.js``, ``stack``), exactly as :func:`stack` does here for the SVG; a test holds
the two to the same positions.

Readable at scale: a mesh of at most :data:`SMALL_CLUSTERS` clusters and
:data:`SMALL_INSTANCES` instances starts with every cluster expanded; a larger one starts with
clusters collapsed, and with more than :data:`FEW_CLUSTERS` clusters in several regions, with
regions collapsed too. Edges between parts that are not expanded are drawn once per pair of
visible parts, with their count (:func:`visible_edges`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshbridge.wire.graph import GraphEdge, GraphLayout, MeshGraph

__all__ = [
    "Box",
    "Drawn",
    "Placed",
    "layout",
    "stack",
    "visible_edges",
]

MAX_COLUMNS = 6
SMALL_CLUSTERS = 12
SMALL_INSTANCES = 240
FEW_CLUSTERS = 40

CELL_WIDTH = 250
GAP_X = 150
GAP_Y = 28
MARGIN = 24
BAND_HEAD = 32
BAND_GAP = 24
CLUSTER_HEAD = 34
ROW_HEIGHT = 22
COLLAPSED_HEIGHT = 58
OUTSIDE_HEIGHT = 40


def layout(graph: MeshGraph) -> GraphLayout:
    """The grid and the starting expansion for ``graph``."""
    bands: list[dict[str, Any]] = []
    cells: dict[str, list[int]] = {}

    width = max(1, min(MAX_COLUMNS, max((len(r.clusters) for r in graph.regions), default=1)))

    def band(kind: str, node: str, title: str, members: list[str], shift: int) -> None:
        index = len(bands)
        columns = max(1, min(width, len(members)))
        # a narrow band steps aside (shift < 0: to the right end), so fewer calls loop in a column
        start = width - columns if shift < 0 else shift % (width - columns + 1)
        bands.append({"id": node, "kind": kind, "title": title, "columns": columns,
                      "nodes": members})
        for i, member in enumerate(members):
            cells[member] = [index, i // columns, start + i % columns]

    if graph.ingress:
        band("ingress", "band:ingress", "from outside (ingress)", [i.id for i in graph.ingress], 0)
    for k, region in enumerate(graph.regions):
        band("region", region.id, region.label, [f"cluster:{c}" for c in region.clusters], k)
    if graph.egress:  # on the right: calls leave the mesh that way
        band("egress", "band:egress", "outside the mesh (egress)", [e.id for e in graph.egress],
             -1)

    small = len(graph.clusters) <= SMALL_CLUSTERS and len(graph.instances) <= SMALL_INSTANCES
    fold_regions = len(graph.clusters) > FEW_CLUSTERS and len(graph.regions) > 1
    return GraphLayout(
        cell_width=CELL_WIDTH, gap_x=GAP_X, gap_y=GAP_Y, margin=MARGIN, band_head=BAND_HEAD,
        band_gap=BAND_GAP, cluster_head=CLUSTER_HEAD, row_height=ROW_HEIGHT,
        collapsed_height=COLLAPSED_HEIGHT, outside_height=OUTSIDE_HEIGHT,
        columns=width, bands=bands, cells=cells,
        expanded_clusters=[c.name for c in graph.clusters] if small else [],
        expanded_regions=[] if fold_regions else [r.name for r in graph.regions],
    )


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass
class Placed:
    """Every visible part's box (node id -> box; an instance's box is its row), the bands'
    boxes, and the picture's size."""

    boxes: dict[str, Box]
    bands: dict[str, Box]
    width: int
    height: int


def stack(graph: MeshGraph, lay: GraphLayout, clusters: Iterable[str], regions: Iterable[str]
          ) -> Placed:
    """The boxes with ``clusters`` and ``regions`` (names) expanded: rows stacked top to
    bottom, a row as tall as its tallest cell. The page's ``stack`` in ``graph.js`` is the
    same computation."""
    open_clusters, open_regions = set(clusters), set(regions)
    members = {c.id: c for c in graph.clusters}
    boxes: dict[str, Box] = {}
    bands: dict[str, Box] = {}
    width = 2 * lay.margin + lay.columns * (lay.cell_width + lay.gap_x)  # room for loops right
    y = lay.margin
    for band in lay.bands:
        region = band["id"].removeprefix("region:") if band["kind"] == "region" else None
        if region is not None and region not in open_regions:
            height = lay.band_head + lay.collapsed_height
            bands[band["id"]] = boxes[band["id"]] = Box(lay.margin, y, lay.cell_width, height)
            y += height + lay.band_gap
            continue
        top = y + lay.band_head
        rows: dict[int, list[str]] = {}
        for node in band["nodes"]:
            rows.setdefault(lay.cells[node][1], []).append(node)
        for row in sorted(rows):
            tallest = 0
            for node in rows[row]:
                col = lay.cells[node][2]
                x = lay.margin + col * (lay.cell_width + lay.gap_x)
                cluster = members.get(node)
                if cluster is None:
                    h = lay.outside_height
                elif cluster.name in open_clusters:
                    h = lay.cluster_head + len(cluster.instances) * lay.row_height + 8
                    for i, inst in enumerate(cluster.instances):
                        boxes[inst] = Box(x, top + lay.cluster_head + i * lay.row_height,
                                          lay.cell_width, lay.row_height)
                else:
                    h = lay.collapsed_height
                boxes[node] = Box(x, top, lay.cell_width, h)
                tallest = max(tallest, h)
            top += tallest + lay.gap_y
        bottom = top - lay.gap_y + 12
        bands[band["id"]] = Box(lay.margin - 12, y, width - 2 * lay.margin + 24, bottom - y)
        y = bottom + lay.band_gap
    return Placed(boxes, bands, width, y - lay.band_gap + lay.margin)


@dataclass(frozen=True)
class Drawn:
    """One line of the picture: a single edge, or ``edges`` folded into one between two
    parts that are not expanded."""

    source: str
    target: str
    edges: tuple[GraphEdge, ...]


def visible_edges(graph: MeshGraph, clusters: Iterable[str], regions: Iterable[str]
                  ) -> list[Drawn]:
    """The lines to draw with ``clusters`` and ``regions`` expanded: each edge's ends moved up
    to the part that shows them, the edges between the same two parts folded into one line,
    and lines inside one folded part left out."""
    open_clusters, open_regions = set(clusters), set(regions)
    region_of = {c.name: c.region for c in graph.clusters}
    cluster_of = {i.id: i.cluster for i in graph.instances}

    def shown(node: str) -> str:
        cluster = cluster_of.get(node) or (node.removeprefix("cluster:")
                                           if node.startswith("cluster:") else None)
        if cluster is None:
            return node
        if region_of[cluster] not in open_regions:
            return f"region:{region_of[cluster]}"
        if cluster not in open_clusters:
            return f"cluster:{cluster}"
        return node

    groups: dict[tuple[str, str], list[GraphEdge]] = {}
    for edge in graph.edges:
        ends = (shown(edge.source), shown(edge.target))
        folded = ends != (edge.source, edge.target)
        if folded and ends[0] == ends[1]:
            continue
        groups.setdefault(ends, []).append(edge)
    return [Drawn(s, t, tuple(es)) for (s, t), es in sorted(groups.items())]


def states_of(drawn: Drawn, severity: Mapping[str, int]) -> str:
    """The most severe state among a line's edges."""
    return max((e.state for e in drawn.edges), key=lambda s: severity.get(s, 0))
