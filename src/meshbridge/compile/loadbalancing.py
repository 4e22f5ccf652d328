"""Cross-cluster load balancing: in each client cluster, a VirtualService on the ordinary name
that splits traffic by the intent's weights, the local DestinationRule, and a ServiceEntry with a
VIP where no local instance runs (so the ordinary name resolves there). A port with ``failover``
is routed whole to the service's mesh-internal name instead (see ``failover``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from meshbridge.compile import naming
from meshbridge.compile.crosscluster import mutual_dr, networking, ports_spec
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Snapshot


def _route(
    snap: Snapshot, cluster: str, ns: str, service: str, port: int, weights: dict[str, int]
) -> list[dict[str, Any]]:
    out = []
    for target, weight in sorted(weights.items()):
        if weight <= 0:
            continue
        host = (
            naming.local_host(service, ns)
            if target == cluster
            else naming.remote_host(service, ns, target)
        )
        out.append({"destination": {"host": host, "port": {"number": port}}, "weight": weight})
    return out


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    grouped: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for cluster in ctx.selected(snap.balanced_by_client):
        for use in snap.balanced_by_client[cluster]:
            grouped[(cluster, use.client_ns, use.namespace, use.service)].add(use.port)
    for (cluster, client_ns, ns, service), ports in sorted(grouped.items()):
        local = naming.local_host(service, ns)
        name = naming.service_key(service, ns)
        exposures = [e for e in snap.exposures(ns, service) if e.port in ports]
        owners = [owner_ref("InboundIntent", e.intent.namespace, e.intent.name) for e in exposures]
        http: list[dict[str, Any]] = []
        tcp: list[dict[str, Any]] = []
        tls: list[dict[str, Any]] = []
        for e in sorted(exposures, key=lambda e: e.port):
            lb = e.intent.spec.load_balancing
            if e.intent.spec.failover is not None:  # every request to the mesh-internal name
                route = [{"destination": {"host": naming.mesh_host(service, ns),
                                          "port": {"number": e.port}}}]
            else:
                assert lb is not None
                route = _route(snap, cluster, ns, service, e.port, dict(lb.weights))
            protocol = e.intent.spec.protocol
            if protocol.is_http:
                http.append({"match": [{"port": e.port}], "route": route})
            elif protocol.is_tls:
                tls.append({"match": [{"port": e.port, "sniHosts": [local]}], "route": route})
            else:
                tcp.append({"match": [{"port": e.port}], "route": route})
        spec: dict[str, Any] = {"hosts": [local], "exportTo": ["."]}
        for key, routes in (("http", http), ("tls", tls), ("tcp", tcp)):
            if routes:
                spec[key] = routes
        yield cluster, make(networking(snap), "VirtualService", name, client_ns, spec, owners)
        yield cluster, mutual_dr(snap, local, client_ns, name, owners)
        app = (ns, exposures[0].intent.spec.app)
        if cluster not in snap.placement.get(app, ()):
            entry = {
                "hosts": [local],
                "location": "MESH_INTERNAL",
                "ports": ports_spec(exposures),
                "resolution": "NONE",
                "addresses": [ctx.vips[(cluster, local)]],
                "exportTo": ["."],
            }
            yield cluster, make(networking(snap), "ServiceEntry", name, client_ns, entry, owners)
