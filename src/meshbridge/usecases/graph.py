"""The picture of a mesh, computed once from its compiled snapshot and its recorded status.

Both edges call it: ``meshbridge serve`` for ``GET /api/v1/graph`` (the page at ``/ui/``), and
``meshbridge graph`` for a self-contained HTML file or an SVG. It works in two steps, so a server
can keep the costly one:

1. :func:`topology` reads the snapshot's indexes — placements, the clients of every intent,
   splits, failover tiers (``compile.failover``), ingress hosts, ExternalServices — and compiles
   every cluster's objects once to learn which objects each intent made where (an object's
   ``meshbridge.dev/owners`` annotation). Only kind, namespace and name of an object are kept:
   Secrets are compiled from placeholder material (``secrets=True``), never from real keys.
2. :func:`graph` adds the state of each object, cluster, instance and edge from the status
   records an apply or the reconciler left (``usecases.apply.cluster_statuses``) and gives the
   :class:`~meshbridge.wire.graph.MeshGraph`. It is cheap: a server runs it on every request,
   since status records change without moving the store's counters.

States (``wire.graph.STATES``): an object recorded Applied is ``applied`` (``drift`` when the
apply put back a change made outside meshbridge), Failed is ``failing``, in an unreachable
cluster ``unreachable``; an object with no record yet is ``pending``; an applied object of a
cluster whose last change every proxy has acknowledged is ``delivered`` (the server's
propagation records, ``usecases.delivery``). A cluster, region,
instance, intent or edge shows the most severe state of what it holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from meshbridge import compile as mbcompile
from meshbridge.compile import failover, naming
from meshbridge.compile.snapshot import Snapshot
from meshbridge.model import InboundIntent
from meshbridge.wire.graph import (
    STATES,
    AccessView,
    ClientView,
    GraphCluster,
    GraphEdge,
    GraphEgress,
    GraphIngress,
    GraphInstance,
    GraphIntent,
    GraphObject,
    GraphRegion,
    GraphSummary,
    MeshGraph,
    PortView,
)

__all__ = ["REGION", "ZONE", "Topology", "graph", "of_snapshot", "topology"]

REGION = failover.REGION
ZONE = failover.ZONE
NO_REGION = "(no region)"
_SEVERITY = {s.name: s.severity for s in STATES}
_PENDING = "pending"

ObjectRef = tuple[str, str, str, str]  # (cluster, kind, namespace, name)


@dataclass
class _Edge:
    kind: Literal["call", "ingress", "egress"]
    source: str
    target: str
    intent: str
    label: str
    clusters: tuple[str, ...]  # where its objects are
    port: int | None = None
    protocol: str | None = None
    weight: int | None = None
    order: int | None = None
    local: bool = False

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.intent}:{self.source}->{self.target}"


@dataclass
class Topology:
    """Everything of the picture but the states: what :func:`graph` completes."""

    snapshot: Snapshot
    instances: list[tuple[str, str, str]]  # (cluster, namespace, app), sorted
    edges: list[_Edge]
    owned: dict[str, list[ObjectRef]] = field(default_factory=dict)  # owner id -> objects
    unowned: dict[str, list[ObjectRef]] = field(default_factory=dict)  # cluster -> objects
    counts: dict[str, int] = field(default_factory=dict)  # cluster -> objects


def instance_id(cluster: str, namespace: str, app: str) -> str:
    return f"app:{namespace}/{app}@{cluster}"


def of_snapshot(snap: Snapshot, statuses: Sequence[Mapping[str, Any]] = ()) -> MeshGraph:
    """The graph of checked intents, VIPs allocated afresh (they are not shown)."""
    return graph(topology(mbcompile.blueprint(snap, []), secrets=True), statuses)


def topology(blueprint: mbcompile.Blueprint, *, secrets: bool) -> Topology:
    """The costly half: placements, calls, and every generated object's name by owner."""
    snap = blueprint.snapshot
    instances = sorted(
        (cluster, ns, app) for (ns, app), placed in snap.placement.items() for cluster in placed
    )
    topo = Topology(snap, instances, [*_calls(snap), *_ingress_edges(snap), *_egress_edges(snap)])
    owned: dict[str, list[ObjectRef]] = defaultdict(list)
    unowned: dict[str, list[ObjectRef]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    material = _placeholder_material(snap) if secrets else None
    for cluster, obj in mbcompile.each_object(blueprint, material):
        meta = obj["metadata"]
        ref = (cluster, obj["kind"], meta.get("namespace", ""), meta["name"])
        counts[cluster] += 1
        owners = meta.get("annotations", {}).get(naming.OWNERS_ANNOTATION, "")
        if not owners:
            unowned[cluster].append(ref)
        for owner in filter(None, owners.split(",")):
            kind, _, rest = owner.partition("/")
            owned[f"{kind}:{rest}"].append(ref)
    topo.owned = {k: sorted(v) for k, v in owned.items()}
    topo.unowned = {k: sorted(v) for k, v in unowned.items()}
    topo.counts = dict(counts)
    return topo


def _placeholder_material(snap: Snapshot) -> mbcompile.Material:
    """Empty certificate material for every cluster and terminated ingress host: the Secrets
    it makes carry nothing, and only their names are read."""
    blank_ca = mbcompile.ClusterCA("", "", "", "")
    hosts = {
        i.spec.external.host
        for intents in snap.services.values()
        for i in intents
        if i.spec.external is not None and i.spec.external.terminated
    }
    return mbcompile.Material(
        cacerts=dict.fromkeys(snap.clusters, blank_ca),
        ingress=dict.fromkeys(sorted(hosts), mbcompile.IngressCredential("", "", "")),
    )


def _intents(snap: Snapshot) -> Iterable[InboundIntent]:
    for intents in snap.services.values():
        yield from intents


def _call_targets(snap: Snapshot, intent: InboundIntent, client_cluster: str
                  ) -> list[tuple[str, int | None, int | None]]:
    """(server cluster, weight, failover tier from 1) for a client in ``client_cluster``, as
    ``compile.snapshot._routes`` and ``compile.failover`` route it."""
    servers = snap.intent_placement(intent)
    split = failover.weights(intent)
    if intent.spec.failover is not None:
        reach = failover.targets(snap, intent)
        if split is not None:
            return [(s, split[s], None) for s in reach]
        tiers = failover.tiers(snap, intent, client_cluster)
        return [(s, None, tiers[s] + 1) for s in reach]
    if split is not None:
        return [(s, split[s], None) for s in servers if s in split]
    if client_cluster in servers:
        return [(client_cluster, None, None)]
    return [(s, None, None) for s in servers]


def _label(port: int, protocol: str, weight: int | None, order: int | None) -> str:
    text = f"{port}/{protocol}"
    if weight is not None:
        text += f" · {weight}%"
    if order is not None:
        text += f" · #{order}"
    return text


def _calls(snap: Snapshot) -> Iterable[_Edge]:
    for intent in _intents(snap):
        ns, port, protocol = intent.namespace, intent.spec.port, intent.spec.protocol.value
        server_app = intent.spec.app
        for client in intent.spec.clients:
            client_ns = client.namespace or ns
            for cc in snap.placement.get((client_ns, client.app), ()):
                for sc, weight, order in _call_targets(snap, intent, cc):
                    yield _Edge(
                        "call",
                        instance_id(cc, client_ns, client.app),
                        instance_id(sc, ns, server_app),
                        f"{ns}/{intent.name}",
                        _label(port, protocol, weight, order),
                        (cc, sc),
                        port=port,
                        protocol=protocol,
                        weight=weight,
                        order=order,
                        local=cc == sc,
                    )


def _ingress_edges(snap: Snapshot) -> Iterable[_Edge]:
    for intent in _intents(snap):
        ext = intent.spec.external
        if ext is None:
            continue
        for cluster in snap.intent_placement(intent):
            yield _Edge(
                "ingress",
                f"ingress:{ext.host}",
                instance_id(cluster, intent.namespace, intent.spec.app),
                f"{intent.namespace}/{intent.name}",
                f"{ext.host}:443 {ext.tls_mode} → {intent.spec.port}",
                (cluster,),
                port=intent.spec.port,
                protocol=intent.spec.protocol.value,
            )


def _egress_clusters(snap: Snapshot, wanted: Sequence[str] | None) -> list[str]:
    return sorted(c for c in (wanted or snap.clusters) if c in snap.clusters)


def _egress_edges(snap: Snapshot) -> Iterable[_Edge]:
    for doc in snap.intents.external_services:
        es = doc.obj
        ports = ", ".join(f"{p.number}/{p.protocol}" for p in es.spec.ports)
        for cluster in _egress_clusters(snap, es.spec.clusters):
            yield _Edge(
                "egress",
                f"cluster:{cluster}",
                f"egress:{es.namespace}/{es.name}",
                f"{es.namespace}/{es.name}",
                ports,
                (cluster,),
            )


# ------------------------------------------------------------------------------- states


class _States:
    """Each object's state from the status records, and the most severe of a group."""

    def __init__(self, statuses: Sequence[Mapping[str, Any]],
                 delivered: Collection[str] = ()) -> None:
        self.clusters: dict[str, Mapping[str, Any]] = {str(s["cluster"]): s for s in statuses}
        self.delivered = frozenset(delivered)
        self.objects: dict[tuple[str, str], tuple[str, str]] = {}
        for record in statuses:
            cluster = str(record["cluster"])
            down = record.get("state") == "Unreachable"
            for entry in record.get("objects", ()):
                key = (cluster, str(entry.get("object", "")))
                reason = str(entry.get("reason", ""))
                state = _object_state(str(entry.get("state", "")), reason)
                if state == "applied" and cluster in self.delivered:
                    state = "delivered"
                self.objects[key] = ("unreachable", reason) if down else (state, reason)

    def of(self, ref: ObjectRef) -> tuple[str, str]:
        cluster, kind, namespace, name = ref
        return self.objects.get((cluster, f"{kind}/{namespace}/{name}"), (_PENDING, ""))

    def cluster(self, name: str) -> str:
        record = self.clusters.get(name)
        if record is None:
            return _PENDING
        applied = "delivered" if name in self.delivered else "applied"
        return {"Applied": applied, "Failed": "failing", "Unreachable": "unreachable"}.get(
            str(record.get("state")), _PENDING)


def _object_state(recorded: str, reason: str) -> str:
    if recorded == "Applied":
        return "drift" if reason.startswith("drift") else "applied"
    return {"Failed": "failing", "Unreachable": "unreachable"}.get(recorded, _PENDING)


def worst(states: Iterable[str], default: str = _PENDING) -> str:
    """The most severe of ``states`` (``default`` for none)."""
    found = max(states, key=lambda s: _SEVERITY.get(s, 0), default=None)
    return default if found is None else found


def graph(topo: Topology, statuses: Sequence[Mapping[str, Any]] = (), revision: str = "",
          delivered: Collection[str] = ()) -> MeshGraph:
    """The graph of ``topo`` with the states ``statuses`` (records by cluster) give;
    ``delivered``: the clusters whose last change every proxy has acknowledged (their applied
    objects are ``delivered``)."""
    snap = topo.snapshot
    states = _States(statuses, delivered)

    def objects(refs: Iterable[ObjectRef]) -> list[GraphObject]:
        out = []
        for ref in refs:
            state, reason = states.of(ref)
            out.append(GraphObject.model_construct(
                cluster=ref[0], kind=ref[1], namespace=ref[2], name=ref[3], state=state,
                reason=reason))
        return out

    owned = {owner: objects(refs) for owner, refs in topo.owned.items()}
    by_cluster_owner: dict[tuple[str, str], list[str]] = defaultdict(list)
    for owner, objs in owned.items():
        for obj in objs:
            by_cluster_owner[(owner, obj.cluster)].append(obj.state)

    edges = []
    touching: dict[str, list[str]] = defaultdict(list)
    for e in topo.edges:
        owner = ("ExternalService:" if e.kind == "egress" else "InboundIntent:") + e.intent
        state = worst(s for c in e.clusters for s in by_cluster_owner.get((owner, c), ()))
        touching[e.source].append(state)
        touching[e.target].append(state)
        edges.append(GraphEdge.model_construct(
            id=e.id, kind=e.kind, source=e.source, target=e.target, intent=e.intent,
            label=e.label, port=e.port, protocol=e.protocol, weight=e.weight, order=e.order,
            local=e.local, state=state))

    clusters = []
    cluster_state: dict[str, str] = {}
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for cluster, ns, app in topo.instances:
        by_cluster[cluster].append(instance_id(cluster, ns, app))
    own_states: dict[str, list[str]] = defaultdict(list)
    for (_, cluster), found in by_cluster_owner.items():
        own_states[cluster].extend(found)
    for name, doc in snap.clusters.items():
        record = states.clusters.get(name, {})
        unowned = objects(topo.unowned.get(name, ()))
        state = worst([states.cluster(name), *own_states.get(name, ()),
                       *(o.state for o in unowned)])
        cluster_state[name] = state
        labels = dict(sorted(doc.metadata.labels.items()))
        clusters.append(GraphCluster.model_construct(
            id=f"cluster:{name}", name=name, region=labels.get(REGION, ""),
            zone=labels.get(ZONE, ""), labels=labels, state=state,
            error=str(record.get("error", "") or ""), time=record.get("time"),
            attempts=int(record.get("attempts", 0) or 0), object_count=topo.counts.get(name, 0),
            objects=unowned, instances=by_cluster.get(name, [])))

    regions: dict[str, list[str]] = defaultdict(list)
    for c in clusters:
        regions[c.region].append(c.name)
    region_list = [
        GraphRegion.model_construct(
            id=f"region:{r}", name=r, label=r or NO_REGION, clusters=names,
            state=worst(cluster_state[n] for n in names))
        for r, names in sorted(regions.items(), key=lambda kv: (kv[0] == "", kv[0]))
    ]

    instances = [
        GraphInstance.model_construct(
            id=(iid := instance_id(cluster, ns, app)), cluster=cluster, namespace=ns, app=app,
            state=worst(touching.get(iid, ()), cluster_state[cluster]))
        for cluster, ns, app in topo.instances
    ]
    intents = [_intent(i, owned) for i in sorted(_intents(snap), key=lambda i: (i.namespace, i.name))]
    ingress = sorted(
        (GraphIngress.model_construct(
            id=f"ingress:{i.external_host}", host=i.external_host, tls_mode=i.external_tls or "",
            intent=i.id, state=i.state)
         for i in intents if i.external_host is not None),
        key=lambda g: g.id,
    )
    egress = [_egress(snap, d.obj, owned) for d in sorted(
        snap.intents.external_services, key=lambda d: (d.obj.namespace, d.obj.name))]
    namespaces = sorted({ns for _, ns, _ in topo.instances} | {e.namespace for e in egress})
    apps = sorted({f"{ns}/{app}" for _, ns, app in topo.instances})
    summary = GraphSummary.model_construct(
        clusters=len(clusters), regions=len(region_list), apps=len(snap.apps),
        instances=len(instances), intents=len(intents), edges=len(edges), ingress=len(ingress),
        egress=len(egress), objects=sum(topo.counts.values()))
    return MeshGraph.model_construct(
        api_version="meshbridge.dev/v1alpha1", kind="MeshGraph", mesh=snap.mesh.name,
        revision=revision, states=list(STATES), summary=summary, regions=region_list,
        clusters=clusters, instances=instances, intents=intents, ingress=ingress, egress=egress,
        edges=sorted(edges, key=lambda e: e.id), namespaces=namespaces, apps=apps, layout=None)


def _intent(intent: InboundIntent, owned: Mapping[str, list[GraphObject]]) -> GraphIntent:
    spec = intent.spec
    objs = owned.get(f"InboundIntent:{intent.namespace}/{intent.name}", [])
    clients = [
        ClientView.model_construct(
            app=c.app, namespace=c.namespace or intent.namespace,
            access_points=None if c.access_points is None else [
                AccessView.model_construct(action=a.action, paths=list(a.paths),
                                           methods=list(a.methods))
                for a in c.access_points])
        for c in spec.clients
    ]
    fo = spec.failover
    return GraphIntent.model_construct(
        id=f"{intent.namespace}/{intent.name}", namespace=intent.namespace, name=intent.name,
        app=spec.app, service=intent.service_name, port=spec.port, protocol=spec.protocol.value,
        clients=clients, weights=failover.weights(intent),
        failover=None if fo is None else list(fo.priority or ()),
        external_host=spec.external.host if spec.external else None,
        external_tls=spec.external.tls_mode if spec.external else None,
        labels=dict(sorted(intent.metadata.labels.items())),
        annotations=dict(sorted(intent.metadata.annotations.items())),
        objects=objs, state=worst(o.state for o in objs))


def _egress(snap: Snapshot, es: Any, owned: Mapping[str, list[GraphObject]]) -> GraphEgress:
    objs = owned.get(f"ExternalService:{es.namespace}/{es.name}", [])
    return GraphEgress.model_construct(
        id=f"egress:{es.namespace}/{es.name}", namespace=es.namespace, name=es.name,
        hosts=list(es.spec.hosts),
        ports=[PortView.model_construct(number=p.number, name=p.name, protocol=p.protocol)
               for p in es.spec.ports],
        clusters=_egress_clusters(snap, es.spec.clusters),
        labels=dict(sorted(es.metadata.labels.items())),
        annotations=dict(sorted(es.metadata.annotations.items())),
        objects=objs, state=worst(o.state for o in objs))
