"""The snapshot: every index the generators read, built once, in a stated order.

Order of construction (each step reads only what the steps before it built):

1. ``clusters``   name -> Cluster, sorted by name
2. ``apps``       (namespace, name) -> App
3. ``placement``  (namespace, app) -> sorted clusters it runs in: ``clusters``, or the
                  Clusters ``clusterSelector`` selects, or for ``discover: {}`` where it was
                  found (the ``Placement`` handed in) plus the clusters its intents' weights
                  and failover priority name (a declared split is never changed silently:
                  ``compile.placement``)
4. ``services``   (namespace, service) -> the intents exposing that Kubernetes Service
5. ``routes``     the cross-cluster topology: for every client cluster and namespace, which
                  remote hosts it needs, and which hosts each server cluster must export

Generators (``crosscluster``, ``loadbalancing``, ...) read these indexes and never search the
documents themselves. Building a snapshot from invalid intents does not fail: dangling
references are left out of the indexes, and ``validate`` reports them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, TypeVar

from meshbridge.compile import naming
from meshbridge.compile.inputs import Placement
from meshbridge.model import App, Cluster, InboundIntent, Intents, Mesh

AppKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Exposure:
    """One port of a service, as an InboundIntent exposes it."""

    intent: InboundIntent
    port: int
    protocol: str

    @property
    def port_name(self) -> str:
        return naming.port_name(self.protocol)


class RemoteUse(NamedTuple):
    """In ``client_cluster``, namespace ``client_ns`` calls ``service.namespace`` in ``server``.

    (Named tuples: a large mesh makes tens of thousands of these per snapshot.)"""

    client_cluster: str
    client_ns: str
    namespace: str
    service: str
    server_cluster: str
    port: int

    @property
    def host(self) -> str:
        return naming.remote_host(self.service, self.namespace, self.server_cluster)


class BalancedUse(NamedTuple):
    """In ``client_cluster``, namespace ``client_ns`` calls a load-balanced (or failover) service
    port by its ordinary name."""

    client_cluster: str
    client_ns: str
    namespace: str
    service: str
    port: int


@dataclass
class Snapshot:
    intents: Intents
    mesh: Mesh
    clusters: dict[str, Cluster]
    apps: dict[AppKey, App]
    placement: dict[AppKey, tuple[str, ...]]
    services: dict[AppKey, tuple[InboundIntent, ...]]
    remote_uses: tuple[RemoteUse, ...] = field(default=())
    balanced_uses: tuple[BalancedUse, ...] = field(default=())
    # where the discovered Apps were found (the input; ``placement`` is what compiles)
    found: Placement = field(default_factory=dict)
    # results derived from the indexes by other compile modules, computed once per snapshot
    derived: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived read-only views

    def gateway_port(self, cluster: str) -> int:
        spec = self.clusters[cluster].spec
        if spec.gateway is not None and spec.gateway.port is not None:
            return spec.gateway.port
        return self.mesh.spec.istio.gateway_node_port

    def exposures(self, namespace: str, service: str) -> tuple[Exposure, ...]:
        return self._exposures.get((namespace, service), ())

    @cached_property
    def _exposures(self) -> Mapping[AppKey, tuple[Exposure, ...]]:
        return {
            key: tuple(Exposure(i, i.spec.port, i.spec.protocol.value) for i in intents)
            for key, intents in self.services.items()
        }

    def intent_placement(self, intent: InboundIntent) -> tuple[str, ...]:
        return self.placement.get((intent.namespace, intent.spec.app), ())

    @cached_property
    def uses_by_client(self) -> Mapping[str, tuple[RemoteUse, ...]]:
        return _group(self.remote_uses, lambda u: u.client_cluster)

    @cached_property
    def uses_by_server(self) -> Mapping[str, tuple[RemoteUse, ...]]:
        return _group(self.remote_uses, lambda u: u.server_cluster)

    @cached_property
    def balanced_by_client(self) -> Mapping[str, tuple[BalancedUse, ...]]:
        return _group(self.balanced_uses, lambda u: u.client_cluster)


U = TypeVar("U", RemoteUse, BalancedUse)


def _group(items: tuple[U, ...], key: Callable[[U], str]) -> dict[str, tuple[U, ...]]:
    out: dict[str, list[U]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return {k: tuple(v) for k, v in out.items()}


def selected(app: App, clusters: Mapping[str, Cluster]) -> tuple[str, ...]:
    """The clusters an App's ``clusterSelector`` selects (every cluster without one), sorted."""
    if app.spec.cluster_selector is None:
        return tuple(sorted(clusters))
    wanted = app.spec.cluster_selector.match_labels.items()
    return tuple(
        sorted(
            name
            for name, cluster in clusters.items()
            if all(cluster.metadata.labels.get(k) == v for k, v in wanted)
        )
    )


def declared(intents: Intents, key: AppKey) -> set[str]:
    """The clusters the intents of App ``key`` name in ``loadBalancing.weights`` (a weight
    above 0) or ``failover.priority``."""
    named: set[str] = set()
    for d in intents.inbound:
        spec = d.obj.spec
        if (d.obj.namespace, spec.app) != key:
            continue
        if spec.load_balancing is not None:
            named.update(c for c, w in spec.load_balancing.weights.items() if w > 0)
        if spec.failover is not None:
            named.update(spec.failover.priority or ())
    return named


def _placement(
    intents: Intents, key: AppKey, app: App, clusters: Mapping[str, Cluster], found: Placement
) -> tuple[str, ...]:
    if app.spec.clusters is not None:
        return tuple(sorted(c for c in app.spec.clusters if c in clusters))
    allowed = selected(app, clusters)
    if app.spec.discover is None:
        return allowed
    kept = found.get(key, frozenset()) | declared(intents, key)
    return tuple(c for c in allowed if c in kept)


def build(intents: Intents, found: Placement | None = None) -> Snapshot:
    """Build every index of the snapshot, in the order the module docstring gives; ``found``:
    where the Apps with ``discover: {}`` run (none: nowhere)."""
    found = found or {}
    clusters: dict[str, Cluster] = {}
    for c in sorted(intents.clusters, key=lambda d: d.obj.name):
        clusters.setdefault(c.obj.name, c.obj)
    apps: dict[AppKey, App] = {}
    for a in intents.apps:
        apps.setdefault((a.obj.namespace, a.obj.name), a.obj)
    placement = {
        key: _placement(intents, key, app, clusters, found) for key, app in sorted(apps.items())
    }
    services: dict[AppKey, list[InboundIntent]] = defaultdict(list)
    seen_ports: set[tuple[str, str, int]] = set()
    for d in sorted(intents.inbound, key=lambda d: (d.obj.namespace, d.obj.name)):
        i = d.obj
        if (i.namespace, i.spec.app) not in apps:
            continue
        port_key = (i.namespace, i.service_name, i.spec.port)
        if port_key in seen_ports:
            continue  # a duplicate exposure; validate reports it
        seen_ports.add(port_key)
        services[(i.namespace, i.service_name)].append(i)
    snap = Snapshot(
        intents=intents,
        mesh=intents.mesh,
        clusters=clusters,
        apps=apps,
        placement=placement,
        services={k: tuple(v) for k, v in sorted(services.items())},
        found=found,
    )
    remote, balanced = _routes(snap)
    snap.remote_uses = remote
    snap.balanced_uses = balanced
    return snap


def _routes(snap: Snapshot) -> tuple[tuple[RemoteUse, ...], tuple[BalancedUse, ...]]:
    """The cross-cluster topology, from every intent's clients and their placements."""
    remote: set[RemoteUse] = set()
    balanced: set[BalancedUse] = set()
    for (namespace, service), intents in snap.services.items():
        for intent in intents:
            servers = snap.intent_placement(intent)
            if not servers:  # a discovered App found nowhere (and in no declared split)
                continue
            lb = intent.spec.load_balancing
            weights = {c: w for c, w in lb.weights.items() if w > 0 and c in servers} if lb else {}
            for client in intent.spec.clients:
                client_ns = client.namespace or namespace
                for c_cluster in snap.placement.get((client_ns, client.app), ()):
                    if lb is not None or intent.spec.failover is not None:
                        balanced.add(
                            BalancedUse(c_cluster, client_ns, namespace, service, intent.spec.port)
                        )
                        # failover reaches every cluster under one name (see compile.failover)
                        targets = [] if intent.spec.failover else [
                            s for s in weights if s != c_cluster
                        ]
                    elif c_cluster in servers:
                        targets = []
                    else:
                        targets = list(servers)
                    for s_cluster in targets:
                        remote.add(
                            RemoteUse(
                                c_cluster,
                                client_ns,
                                namespace,
                                service,
                                s_cluster,
                                intent.spec.port,
                            )
                        )
    return tuple(sorted(remote)), tuple(sorted(balanced))
