"""The Services and EndpointSlices of the lab's apps, as a cluster's controllers keep them.

istiod learns about workloads from Pods, Services and EndpointSlices; with no controller-manager
in the test clusters, the lab writes one Service per (namespace, service) of the app pods in a
cluster, and one EndpointSlice listing the ready pods, and deletes both when the last pod goes.
"""

from __future__ import annotations

from typing import Any

from . import kube
from .common import NODE_NAME, LabError
from .scenario.plan import Instance, Plan
from .state import LabState

PROTOCOLS = ("TCP", "HTTP", "HTTP2", "GRPC", "TLS", "HTTPS")


def service_port(number: int, protocol: str) -> dict[str, Any]:
    """A Service port as the app's own manifest declares it: its name carries the protocol the
    workload speaks, the way Istio reads it (``http-8000``, ``tcp-3306``).

    That is the intent's protocol unless ``--service-protocol`` says otherwise: the seed's
    httpbin, for one, declares its port ``http`` while the intent that exposes it across
    clusters says TCP. Istio's server sidecar treats the port as its Service declares it (an
    HTTP port gets the caller's identity in ``x-forwarded-client-cert``; a TCP port is proxied
    as bytes).
    """
    return {"name": f"{protocol.lower()}-{number}", "port": number, "targetPort": number,
            "protocol": "TCP"}


def parse_service_protocols(values: list[str]) -> dict[str, str]:
    """``NAMESPACE/SERVICE:PORT=PROTOCOL`` options -> {"NAMESPACE/SERVICE:PORT": PROTOCOL}."""
    out = {}
    for value in values:
        target, sep, protocol = value.partition("=")
        ns_svc, colon, port = target.rpartition(":")
        protocol = protocol.upper()
        if not sep or not colon or "/" not in ns_svc or not port.isdigit() or \
                protocol not in PROTOCOLS:
            raise LabError(f"--service-protocol {value!r}: expected NAMESPACE/SERVICE:PORT=PROTOCOL"
                           f" with PROTOCOL one of {', '.join(PROTOCOLS)}", status=2)
        out[f"{ns_svc}:{int(port)}"] = protocol
    return out


def wanted_services(lab: LabState, plan: Plan, cluster: str
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, name) -> selector, {port: declared protocol}, {pod: address}."""
    services: dict[tuple[str, str], dict[str, Any]] = {}
    declared = lab.state.get("service_protocols", {})
    for inst in plan.instances.values():
        if inst.cluster != cluster:
            continue
        rec = lab.state["pods"][inst.key]
        for port in inst.ports:
            svc = services.setdefault((inst.namespace, port.service), {
                "selector": inst.labels, "ports": {}, "pods": {}})
            svc["ports"][port.number] = declared.get(
                f"{inst.namespace}/{port.service}:{port.number}", port.protocol)
            svc["pods"][rec["name"]] = rec["address"]
    return services


def write_services(lab: LabState, cluster: str,
                   services: dict[tuple[str, str], dict[str, Any]], gone: set[str]) -> None:
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        for (ns, name), svc in sorted(services.items()):
            ports = [service_port(n, p) for n, p in sorted(svc["ports"].items())]
            k.apply([kube.service(name, ns, svc["selector"], ports)])
            slice_ports = [{"name": p["name"], "port": p["port"], "protocol": "TCP"}
                           for p in ports]
            k.apply([kube.endpoint_slice(name, ns, slice_ports,
                                         [(pod, addr, NODE_NAME)
                                          for pod, addr in svc["pods"].items()])])
        for ns_name in sorted(gone):  # no instance left: the Service goes with its pods
            ns, name = ns_name.split("/")
            k.delete([kube.endpoint_slice(name, ns, [], []), kube.service(name, ns, {}, [])])
    finally:
        k.close()


def service_names(instances: list[Instance]) -> list[str]:
    return sorted({f"{i.namespace}/{p.service}" for i in instances for p in i.ports})


def publish_endpoints(lab: LabState, plan: Plan) -> None:
    """Services and EndpointSlices, as the controllers would keep them, per cluster."""
    for cluster in plan.clusters:
        services = wanted_services(lab, plan, cluster)
        published = set(lab.state.get("services", {}).get(cluster, []))
        gone = published - {f"{ns}/{name}" for ns, name in services}
        if services or gone:
            write_services(lab, cluster, services, gone)
    lab.state["services"] = {
        c: service_names([i for i in plan.instances.values() if i.cluster == c])
        for c in plan.clusters}
    lab.save()
