"""Cross-cluster access: client-side ServiceEntry + DestinationRule, server-side Gateway,
ServiceEntry + DestinationRule, as the seed writes them by hand (sleep -> httpbin)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Exposure, Snapshot

TLS_MODE_LABEL = "security.istio.io/tlsMode"


def networking(snap: Snapshot) -> str:
    return f"networking.istio.io/{snap.mesh.spec.istio.api_version}"


def port_names(exposures: list[Exposure]) -> dict[int, str]:
    """Port number -> Istio port name: the protocol, with the number added when ambiguous."""
    count: dict[str, int] = defaultdict(int)
    for e in exposures:
        count[e.port_name] += 1
    return {
        e.port: e.port_name if count[e.port_name] == 1 else f"{e.port_name}-{e.port}"
        for e in exposures
    }


def ports_spec(exposures: list[Exposure]) -> list[dict[str, object]]:
    names = port_names(exposures)
    return [
        {"number": e.port, "protocol": e.protocol, "name": names[e.port]}
        for e in sorted(exposures, key=lambda e: e.port)
    ]


def mutual_dr(
    snap: Snapshot,
    host: str,
    namespace: str,
    name: str,
    owners: list[str],
    export_local: bool = True,
) -> Obj:
    spec: dict[str, object] = {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    if export_local:
        spec["exportTo"] = ["."]
    return make(networking(snap), "DestinationRule", name, namespace, spec, owners)


def _used_exposures(
    snap: Snapshot, namespace: str, service: str, ports: set[int]
) -> list[Exposure]:
    return [e for e in snap.exposures(namespace, service) if e.port in ports]


def _owners(exposures: list[Exposure]) -> list[str]:
    return [owner_ref("InboundIntent", e.intent.namespace, e.intent.name) for e in exposures]


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    yield from _client_side(snap, ctx)
    yield from _server_side(snap, ctx)


def _client_side(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    grouped: dict[tuple[str, str, str, str, str], set[int]] = defaultdict(set)
    for cluster in ctx.selected(snap.uses_by_client):
        for use in snap.uses_by_client[cluster]:
            key = (cluster, use.client_ns, use.namespace, use.service, use.server_cluster)
            grouped[key].add(use.port)
    for (cluster, client_ns, ns, service, server), ports in sorted(grouped.items()):
        host = naming.remote_host(service, ns, server)
        exposures = _used_exposures(snap, ns, service, ports)
        owners = _owners(exposures)
        gateway = snap.clusters[server].spec.gateway
        assert gateway is not None and gateway.address is not None  # see validate.gateways
        gw_port = snap.gateway_port(server)
        names = port_names(exposures)
        spec = {
            "hosts": [host],
            "location": "MESH_INTERNAL",
            "ports": ports_spec(exposures),
            "resolution": "DNS",
            "addresses": [ctx.vips[(cluster, host)]],
            "endpoints": [
                {"address": gateway.address, "ports": {names[p]: gw_port for p in sorted(names)}}
            ],
            "exportTo": ["."],
        }
        yield cluster, make(networking(snap), "ServiceEntry", host, client_ns, spec, owners)
        yield cluster, mutual_dr(snap, host, client_ns, host, owners)


def exported(
    snap: Snapshot, host: str, exposures: list[Exposure], vip: str | None
) -> Iterator[Obj]:
    """``host`` exported through this cluster's ingress gateway to the service behind it: the
    AUTO_PASSTHROUGH Gateway on 15443, a ServiceEntry mapping the host to the local service, and
    its ISTIO_MUTUAL DestinationRule, all in istio-system (the gateway's namespace)."""
    service, ns = exposures[0].intent.service_name, exposures[0].intent.namespace
    owners = _owners(exposures)
    gateway = {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            {
                "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": [host],
            }
        ],
    }
    entry: dict[str, object] = {
        "hosts": [host],
        "location": "MESH_INTERNAL",
        "ports": ports_spec(exposures),
        "resolution": "DNS",
    }
    if vip is not None:
        # Istio wants an address on a TCP ServiceEntry (IST0134); the host then has one VIP in
        # this cluster, as everywhere.
        entry["addresses"] = [vip]
    # The label tells istiod the endpoint speaks Istio mTLS: without it the endpoint is dropped
    # from the gateway's AUTO_PASSTHROUGH (SNI-DNAT) cluster, and every request arriving through
    # the gateway is reset.
    entry["endpoints"] = [
        {"address": naming.local_host(service, ns), "labels": {TLS_MODE_LABEL: "istio"}}
    ]
    entry["exportTo"] = ["."]
    api = networking(snap)
    yield make(api, "Gateway", naming.gateway_name(host), naming.ISTIO_SYSTEM, gateway, owners)
    yield make(api, "ServiceEntry", host, naming.ISTIO_SYSTEM, entry, owners)
    yield mutual_dr(snap, host, naming.ISTIO_SYSTEM, host, owners)


def _server_side(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    grouped: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for cluster in ctx.selected(snap.uses_by_server):
        for use in snap.uses_by_server[cluster]:
            grouped[(cluster, use.namespace, use.service)].add(use.port)
    for (cluster, ns, service), ports in sorted(grouped.items()):
        host = naming.remote_host(service, ns, cluster)
        exposures = _used_exposures(snap, ns, service, ports)
        for obj in exported(snap, host, exposures, ctx.vips[(cluster, host)]):
            yield cluster, obj
