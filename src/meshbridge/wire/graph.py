"""The picture of a mesh as data: what ``GET /api/v1/graph`` answers and ``meshbridge graph`` draws.

One shape for the page of ``meshbridge serve`` (``/ui/``), the self-contained HTML file and the
SVG: regions of clusters, the app instances placed in them, an edge per client -> server call an
InboundIntent allows (port and protocol, split weight, failover order), ingress hosts and egress
services, and where each piece of configuration stands in its cluster (``state``, from the last
recorded apply or reconcile). ``layout`` is where the picture puts each part (``meshbridge.ui``
computes it; a program reading the graph may ignore it).

A viewer token reads it, so it holds only what a viewer may read anyway: the documents' own
fields (a viewer reads every document) and, per generated object, its kind, namespace, name and
recorded state (what ``GET /api/v1/status`` shows). Never an object's content: no Secret data, no
certificate, no VIP table.

Node ids: ``region:<name>``, ``cluster:<name>``, ``app:<namespace>/<app>@<cluster>`` (an app
instance), ``ingress:<host>``, ``egress:<namespace>/<name>``. Every list is sorted, so the same
intents and status give the same bytes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from meshbridge.wire.messages import _Wire  # the wire's one base: camelCase, lenient, frozen

__all__ = [
    "GRAPH_KIND",
    "STATES",
    "AccessView",
    "ClientView",
    "GraphCluster",
    "GraphEdge",
    "GraphEgress",
    "GraphIngress",
    "GraphInstance",
    "GraphIntent",
    "GraphLayout",
    "GraphObject",
    "GraphRegion",
    "GraphSummary",
    "MeshGraph",
    "PortView",
    "StateInfo",
]

GRAPH_KIND = "MeshGraph"


class StateInfo(_Wire):
    """One state of the legend. ``severity`` orders them: a cluster or edge shows the most
    severe state of its objects. A new state (``delivered``: every proxy has the configuration)
    is one more row of :data:`STATES`; readers take the legend from the graph, not from code."""

    name: str
    label: str
    description: str
    severity: int


STATES: tuple[StateInfo, ...] = (
    StateInfo(name="delivered", label="delivered to proxies", severity=0,
              description="applied, and every proxy of its cluster has acknowledged the "
                          "cluster's last change"),
    StateInfo(name="applied", label="applied", severity=1,
              description="the last apply wrote it and the cluster holds it"),
    StateInfo(name="pending", label="not applied", severity=2,
              description="no apply of it is recorded yet"),
    StateInfo(name="drift", label="drift corrected", severity=3,
              description="the last apply found it changed outside meshbridge and put it back"),
    StateInfo(name="failing", label="failing", severity=4,
              description="the last apply of it failed: a conflict, a refusal or an error"),
    StateInfo(name="unreachable", label="unreachable", severity=5,
              description="the cluster could not be reached at the last apply"),
)


class GraphObject(_Wire):
    """A generated object in one cluster, named only, with its recorded state."""

    cluster: str
    kind: str
    namespace: str
    name: str
    state: str
    reason: str = ""


class GraphRegion(_Wire):
    """Clusters sharing a ``topology.kubernetes.io/region`` label (``name`` empty: no label)."""

    id: str
    name: str
    label: str
    clusters: list[str]
    state: str


class GraphCluster(_Wire):
    id: str
    name: str
    region: str
    zone: str
    labels: dict[str, str]
    state: str
    error: str = ""
    time: str | None = None  # of the last recorded result
    attempts: int = 0
    object_count: int = 0
    objects: list[GraphObject] = Field(default_factory=list)  # owned by no intent
    instances: list[str] = Field(default_factory=list)


class GraphInstance(_Wire):
    """An app placed in a cluster."""

    id: str
    cluster: str
    namespace: str
    app: str
    state: str


class AccessView(_Wire):
    action: str
    paths: list[str]
    methods: list[str]


class ClientView(_Wire):
    app: str
    namespace: str
    access_points: list[AccessView] | None = None


class _Document(_Wire):
    """A document shown in the picture: its own labels and annotations, the objects made for
    it in every cluster, and their most severe state."""

    id: str
    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    objects: list[GraphObject] = Field(default_factory=list)
    state: str


class GraphIntent(_Document):
    """An InboundIntent: who may call which port of which app, and what it made."""

    app: str
    service: str
    port: int
    protocol: str
    clients: list[ClientView]
    weights: dict[str, int] | None = None
    failover: list[str] | None = None  # the clusters in priority order, or [] for locality
    external_host: str | None = None
    external_tls: str | None = None


class PortView(_Wire):
    number: int
    name: str
    protocol: str


class GraphEgress(_Document):
    """An ExternalService: hosts outside the mesh, reachable from ``clusters``."""

    hosts: list[str]
    ports: list[PortView]
    clusters: list[str]


class GraphIngress(_Wire):
    """A host reachable from outside the mesh, through the ingress gateway."""

    id: str
    host: str
    tls_mode: str
    intent: str
    state: str


class GraphEdge(_Wire):
    """A call: ``source`` -> ``target`` node ids. ``kind``: ``call`` (an app instance calls
    another under ``intent``), ``ingress`` (outside -> an instance), ``egress`` (a cluster ->
    an ExternalService). ``weight``: the split's share in percent; ``order``: the failover
    tier (1 first); ``local``: both ends in one cluster."""

    id: str
    kind: Literal["call", "ingress", "egress"]
    source: str
    target: str
    intent: str
    label: str
    port: int | None = None
    protocol: str | None = None
    weight: int | None = None
    order: int | None = None
    local: bool = False
    state: str


class GraphSummary(_Wire):
    clusters: int
    regions: int
    apps: int
    instances: int
    intents: int
    edges: int
    ingress: int
    egress: int
    objects: int


class GraphLayout(_Wire):
    """Where the picture puts things (``meshbridge.ui.layout``): bands (ingress, each region,
    egress) of cells on a grid; a cell's height depends on whether it is expanded, so a reader
    stacks the rows itself. ``cells``: node id -> [band index, row, column]."""

    cell_width: int
    gap_x: int
    gap_y: int
    margin: int
    band_head: int
    band_gap: int
    cluster_head: int
    row_height: int
    collapsed_height: int
    outside_height: int
    columns: int
    bands: list[dict[str, Any]]
    cells: dict[str, list[int]]
    expanded_clusters: list[str]
    expanded_regions: list[str]


class MeshGraph(_Wire):
    api_version: Literal["meshbridge.dev/v1alpha1"] = "meshbridge.dev/v1alpha1"
    kind: Literal["MeshGraph"] = "MeshGraph"
    mesh: str
    revision: str = ""
    states: list[StateInfo]
    summary: GraphSummary
    regions: list[GraphRegion]
    clusters: list[GraphCluster]
    instances: list[GraphInstance]
    intents: list[GraphIntent]
    ingress: list[GraphIngress]
    egress: list[GraphEgress]
    edges: list[GraphEdge]
    namespaces: list[str]
    apps: list[str]
    layout: GraphLayout | None = None
