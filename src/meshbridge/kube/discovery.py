"""Gateway discovery: where other clusters reach this cluster's ingress gateway port 15443.

Read from the ``istio-ingressgateway`` Service in ``istio-system``: a LoadBalancer's ingress
address and port 15443, or else (NodePort) a node's address and the node port of 15443. A node
address prefers ExternalIP, then InternalIP, of the first node in name order. Each read is
sent again while the server answers 429 (``kube.retry.patiently``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError
from lightkube.resources.core_v1 import Node, Service

from meshbridge.errors import DiscoveryError, KubeconfigError
from meshbridge.kube.fleet import ClusterAccess, client_for
from meshbridge.kube.retry import patiently

SERVICE = ("istio-system", "istio-ingressgateway")
TLS_PORT = 15443


@dataclass(frozen=True)
class GatewayAddress:
    address: str
    port: int
    source: str  # how it was found, for the user


async def discover_gateway(target: ClusterAccess, timeout: float) -> GatewayAddress:
    """The gateway address of ``target``'s cluster; KubeconfigError or DiscoveryError (both
    ClusterErrors) saying why it cannot be read."""
    client = client_for(target, timeout)
    try:
        return await discover(client)
    finally:
        await client.close()


async def discover(client: AsyncClient) -> GatewayAddress:
    """The gateway address read from the cluster, or DiscoveryError saying what went wrong."""
    try:
        return await _discover(client)
    except ApiError as exc:
        raise DiscoveryError(f"{exc.status.code}: {exc.status.message}") from exc
    except (httpx2.TransportError, OSError) as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        raise DiscoveryError(f"cannot reach the cluster's API server: {reason}") from exc
    except httpx2.HTTPStatusError as exc:  # an answer that is not the API server's (a proxy's)
        raise DiscoveryError(
            f"{exc.response.status_code}: {exc.request.method} {exc.request.url.path}"
        ) from exc
    except ConfigError as exc:  # credentials that fail when used (an exec plugin, a token file)
        raise KubeconfigError(f"kubeconfig: {exc}") from exc


async def _discover(client: AsyncClient) -> GatewayAddress:
    try:
        found = await patiently(lambda: client.get(Service, SERVICE[1], namespace=SERVICE[0]))
        svc = found.to_dict()
    except ApiError as exc:
        raise DiscoveryError(f"service {SERVICE[0]}/{SERVICE[1]}: {exc.status.message}") from exc
    spec: dict[str, Any] = svc.get("spec") or {}
    ports = [p for p in spec.get("ports") or [] if p.get("port") == TLS_PORT]
    if not ports:
        raise DiscoveryError(f"service {SERVICE[0]}/{SERVICE[1]} has no port {TLS_PORT}")
    for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        address = ingress.get("ip") or ingress.get("hostname")
        if address:
            return GatewayAddress(address, TLS_PORT, "LoadBalancer ingress")
    node_port = ports[0].get("nodePort")
    if not node_port:
        raise DiscoveryError(
            f"service {SERVICE[0]}/{SERVICE[1]} has no load balancer address "
            f"and no node port for {TLS_PORT}"
        )
    try:
        listed = await patiently(lambda: _nodes(client))
    except ApiError as exc:
        raise DiscoveryError(
            f"service {SERVICE[0]}/{SERVICE[1]} is a NodePort service, and the nodes cannot be "
            f"listed: {exc.status.code}: {exc.status.message}"
        ) from exc
    nodes = sorted(listed, key=lambda n: n["metadata"]["name"])
    for wanted in ("ExternalIP", "InternalIP"):
        for node in nodes:
            for addr in (node.get("status") or {}).get("addresses") or []:
                if addr.get("type") == wanted and addr.get("address"):
                    return GatewayAddress(
                        addr["address"],
                        int(node_port),
                        f"node {node['metadata']['name']} {wanted}, NodePort",
                    )
    raise DiscoveryError("no node with an ExternalIP or InternalIP address")


async def _nodes(client: AsyncClient) -> list[dict[str, Any]]:
    return [n.to_dict() async for n in client.list(Node)]
