"""The picture as one SVG file, for documentation: the page's first view, drawn in Python.

Same bands, cells and lines as the page shows before anything is clicked (``layout``), with the
legend at the bottom. Every name is XML-escaped text; the same graph gives the same bytes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from meshbridge.ui import layout as lay_mod
from meshbridge.ui.theme import color
from meshbridge.wire.graph import GraphLayout, MeshGraph

__all__ = ["render"]

FONT = "DejaVu Sans, Verdana, sans-serif"
LEGEND_HEIGHT = 40
LABELS_UP_TO = 150  # lines labelled with port/protocol; more would cover the picture


def _text(x: float, y: float, text: str, cls: str, anchor: str = "start") -> str:
    extra = "" if anchor == "start" else f' text-anchor="{anchor}"'
    return f'<text x="{x:g}" y="{y:g}" class="{cls}"{extra}>{escape(text)}</text>'


def _anchor(box: lay_mod.Box, right: bool) -> tuple[float, float]:
    return (box.x + box.w if right else box.x, box.y + min(box.h, 34) / 2)


LABEL_AT = 0.7  # where on a curve its label sits: nearer its target, so the labels of lines
# leaving one row spread out instead of piling up in the middle


def path_of(a: lay_mod.Box, b: lay_mod.Box) -> tuple[str, float, float]:
    """A curve from ``a`` to ``b`` and the point for its label (the page's ``pathOf`` is the
    same)."""
    if a.x + a.w <= b.x:
        (sx, sy), (tx, ty) = _anchor(a, True), _anchor(b, False)
        dx = max(40.0, (tx - sx) / 2)
        c1, c2 = (sx + dx, sy), (tx - dx, ty)
    elif b.x + b.w <= a.x:
        (sx, sy), (tx, ty) = _anchor(a, False), _anchor(b, True)
        dx = max(40.0, (sx - tx) / 2)
        c1, c2 = (sx - dx, sy), (tx + dx, ty)
    else:  # same column: out to the right and back
        (sx, sy), (tx, ty) = _anchor(a, True), _anchor(b, True)
        bulge = 30 + min(abs(ty - sy), 400) / 6
        c1, c2 = (sx + bulge, sy), (tx + bulge, ty)
    t, u = LABEL_AT, 1 - LABEL_AT
    lx = u**3 * sx + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * tx
    ly = u**3 * sy + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * ty
    d = f"M{sx:g},{sy:g} C{c1[0]:g},{c1[1]:g} {c2[0]:g},{c2[1]:g} {tx:g},{ty:g}"
    return d, round(lx, 1), round(ly, 1)


def render(graph: MeshGraph) -> bytes:
    """The SVG of ``graph`` (its ``layout`` computed when missing)."""
    lay = graph.layout or lay_mod.layout(graph)
    placed = lay_mod.stack(graph, lay, lay.expanded_clusters, lay.expanded_regions)
    severity = {s.name: s.severity for s in graph.states}
    height = placed.height + LEGEND_HEIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{placed.width}" height="{height}" '
        f'viewBox="0 0 {placed.width} {height}" font-family={quoteattr(FONT)}>',
        "<style>"
        ".band{fill:#f4f6f8;stroke:#d5dae0}.bt{font-size:13px;font-weight:bold;fill:#3b4550}"
        ".cell{fill:#fff;stroke-width:2}.ct{font-size:13px;font-weight:bold;fill:#1d252c}"
        ".cs{font-size:11px;fill:#5b6672}.it{font-size:12px;fill:#1d252c}"
        ".ns{font-size:11px;fill:#7b8692}.el{font-size:10px;fill:#3b4550}"
        ".edge{fill:none;stroke-width:1.6;opacity:.8}.lt{font-size:11px;fill:#3b4550}"
        "</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#5b6672"/></marker></defs>',
        f'<rect width="{placed.width}" height="{height}" fill="#ffffff"/>',
    ]
    out += _bands(graph, placed)
    out += _cells(graph, placed)
    out += _lines(graph, lay, placed, severity)
    out += _legend(graph, placed.height)
    out.append("</svg>\n")
    return "\n".join(out).encode()


def _bands(graph: MeshGraph, placed: lay_mod.Placed) -> list[str]:
    out = []
    regions = {r.id: r for r in graph.regions}
    for band_id, box in placed.bands.items():
        region = regions.get(band_id)
        title = region.label if region else (
            "from outside (ingress)" if band_id == "band:ingress" else "outside the mesh (egress)")
        stroke = f' style="stroke:{color(region.state)}"' if region else ""
        out.append(f'<rect class="band" x="{box.x}" y="{box.y}" width="{box.w}" '
                   f'height="{box.h}" rx="8"{stroke}/>')
        out.append(_text(box.x + 12, box.y + 21, f"region {title}" if region else title, "bt"))
        if region and band_id in placed.boxes:  # folded
            out.append(_text(box.x + 12, box.y + 46,
                             f"{len(region.clusters)} clusters (folded)", "cs"))
    return out


def _cells(graph: MeshGraph, placed: lay_mod.Placed) -> list[str]:
    out = []
    instances = {i.id: i for i in graph.instances}
    outside = {**{i.id: (i.host, i.tls_mode, i.state) for i in graph.ingress},
               **{e.id: (", ".join(e.hosts), f"{e.namespace}/{e.name}", e.state)
                  for e in graph.egress}}
    for cluster in graph.clusters:
        box = placed.boxes.get(cluster.id)
        if box is None or cluster.id in placed.bands:
            continue
        out.append(f'<rect class="cell" x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" '
                   f'rx="6" stroke="{color(cluster.state)}"/>')
        out.append(f'<circle cx="{box.x + 14}" cy="{box.y + 17}" r="5" '
                   f'fill="{color(cluster.state)}"/>')
        out.append(_text(box.x + 26, box.y + 21, cluster.name, "ct"))
        if cluster.zone:
            out.append(_text(box.x + box.w - 10, box.y + 21, cluster.zone, "cs", "end"))
        if cluster.instances and cluster.instances[0] in placed.boxes:
            for inst_id in cluster.instances:
                row, inst = placed.boxes[inst_id], instances[inst_id]
                out.append(f'<circle cx="{row.x + 14}" cy="{row.y + 11}" r="3.5" '
                           f'fill="{color(inst.state)}"/>')
                out.append(f'<text x="{row.x + 24}" y="{row.y + 15}" class="it">'
                           f'{escape(inst.app)} <tspan class="ns">{escape(inst.namespace)}</tspan>'
                           "</text>")
        else:
            out.append(_text(box.x + 12, box.y + 44, f"{len(cluster.instances)} app instances, "
                             f"{cluster.object_count} objects", "cs"))
    for node, (title, sub, state) in outside.items():
        box = placed.boxes[node]
        out.append(f'<rect class="cell" x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" '
                   f'rx="16" stroke="{color(state)}" stroke-dasharray="5 3"/>')
        out.append(_text(box.x + 14, box.y + 17, title, "it"))
        out.append(_text(box.x + 14, box.y + 32, sub, "ns"))
    return out


def _lines(graph: MeshGraph, lay: GraphLayout, placed: lay_mod.Placed,
           severity: dict[str, int]) -> list[str]:
    drawn = lay_mod.visible_edges(graph, lay.expanded_clusters, lay.expanded_regions)
    out = []
    labelled = len(drawn) <= LABELS_UP_TO
    for line in drawn:
        a, b = placed.boxes.get(line.source), placed.boxes.get(line.target)
        if a is None or b is None:
            continue
        d, mx, my = path_of(a, b)
        state = lay_mod.states_of(line, severity)
        width = 1.6 if len(line.edges) == 1 else min(6.0, 1.6 + len(line.edges) ** 0.5)
        out.append(f'<path class="edge" d="{d}" stroke="{color(state)}" '
                   f'stroke-width="{width:g}" marker-end="url(#arrow)"/>')
        if labelled:
            text = line.edges[0].label if len(line.edges) == 1 else f"{len(line.edges)} calls"
            out.append(_text(mx, my - 4, text, "el", "middle"))
    return out


def _legend(graph: MeshGraph, top: int) -> list[str]:
    out = [_text(24, top + 24, "state:", "lt")]
    x = 70
    for state in graph.states:
        out.append(f'<rect x="{x}" y="{top + 14}" width="12" height="12" rx="2" '
                   f'fill="{color(state.name)}"/>')
        out.append(_text(x + 17, top + 24, state.label, "lt"))
        x += 30 + 7 * len(state.label)
    return out
