"""The ingress gateways: per cluster ``pilot-agent proxy router`` (``sni-dnat``) running the
stock Envoy at the node address that stands for the Cluster's ``gateway``.

The gateway gets the Service, ServiceAccount, Role and RoleBinding of the install manifest
``istioctl manifest generate`` makes of the cluster's rendered IstioOperator, its labels and
environment, a Node and Pod object, and an EndpointSlice. kube-proxy's NodePort is stood in for
by iptables REDIRECT in the gateway's namespace, from each NodePort to its target port.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from . import istio, kube
from .common import GATEWAY_NAME, GATEWAY_SERVICE_ACCOUNT, NODE_NAME, LabError
from .pods import Pod, new_pod, start_proxy
from .state import LabState

NodePorts = dict[str, dict[str, Any]]  # Service port -> {node_port, target, name}


def node_ports_of(services: list[Any]) -> NodePorts:
    """The gateway Service's ports, as the API server assigned their NodePorts."""
    node_ports = {}
    for svc in services:
        if getattr(svc, "kind", None) == "Service":
            for p in svc.spec.ports or []:
                node_ports[str(p.port)] = {"node_port": p.nodePort,
                                           "target": int(p.targetPort or p.port),
                                           "name": p.name}
    return node_ports


def publish_gateway(lab: LabState, cluster: str, install: istio.Install) -> tuple[Pod, str]:
    """The Node, the install's gateway objects, the gateway Pod (with status) and its
    EndpointSlice in the cluster; the pod's record and its service-account token."""
    info = lab.cluster(cluster)
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        node_labels = {key: v for key, v in info["labels"].items()
                       if key.startswith("topology.kubernetes.io/")}
        k.apply([kube.node(NODE_NAME, info["node"], node_labels)])
        info["node_ports"] = node_ports = node_ports_of(k.apply(install.gateway_objects))
        rec = new_pod(lab, f"{GATEWAY_NAME}.istio-system@{cluster}", "gateway", cluster,
                      "istio-system", GATEWAY_NAME, info["node"])
        k.apply([kube.pod(rec["name"], "istio-system", install.gateway_labels,
                          GATEWAY_SERVICE_ACCOUNT, NODE_NAME, ["istio-proxy"])])
        k.set_pod_status(rec["name"], "istio-system", kube.pod_status(info["node"],
                                                                     info["node"]))
        ports = [{"name": v["name"], "port": v["target"], "protocol": "TCP"}
                 for v in node_ports.values()]
        k.apply([kube.endpoint_slice(GATEWAY_NAME, "istio-system", ports,
                                     [(rec["name"], info["node"], NODE_NAME)])])
        return rec, k.token(GATEWAY_SERVICE_ACCOUNT, "istio-system")
    finally:
        k.close()


def redirect_node_ports(lab: LabState, rec: Pod, node_ports: NodePorts) -> None:
    """The NodePort stand-in: node address:nodePort -> the gateway's target port."""
    rules = ["*nat", ":PREROUTING ACCEPT [0:0]"]
    for v in node_ports.values():
        if v["node_port"]:
            rules.append(f"-A PREROUTING -p tcp --dport {v['node_port']} "
                         f"-j REDIRECT --to-ports {v['target']}")
    rules.append("COMMIT")
    proc = subprocess.run(["ip", "netns", "exec", lab.fabric.ns(rec["netns"]),
                           "iptables-restore", "--noflush"], input="\n".join(rules) + "\n",
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"iptables-restore in {rec['netns']}: {proc.stderr.strip()}")


def start_gateway(lab: LabState, cluster: str, install: istio.Install, tools: dict[str, Path]
                  ) -> None:
    rec, token = publish_gateway(lab, cluster, install)
    info = lab.cluster(cluster)
    node_ports: NodePorts = info["node_ports"]
    redirect_node_ports(lab, rec, node_ports)
    env = istio.pod_env(
        name=rec["name"], namespace="istio-system", address=rec["address"], node=NODE_NAME,
        node_address=info["node"], service_account=GATEWAY_SERVICE_ACCOUNT,
        cluster=cluster, mesh=lab.mesh(cluster), envoy=istio.envoy_binary(),
        workload=GATEWAY_NAME, ports=[v["target"] for v in node_ports.values()],
        extra={k: v for k, v in install.gateway_env.items() if k != "ISTIO_META_CLUSTER_ID"},
    )
    start_proxy(lab, f"{GATEWAY_NAME}.istio-system@{cluster}", rec, tools, env,
                install.gateway_labels, token,
                ["proxy", "router", "--domain", "istio-system.svc.cluster.local",
                 "--proxyLogLevel=warning", "--log_output_level=default:info"])
