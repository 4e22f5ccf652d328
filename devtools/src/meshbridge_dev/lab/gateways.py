"""The ingress gateways: per cluster ``pilot-agent proxy router`` (``sni-dnat``) running the
stock Envoy at the node address that stands for the Cluster's ``gateway``.

The gateway's Service, ServiceAccount, Role and RoleBinding are the install's, written before
meshbridge applies (``control.install_objects``); here it gets its labels and environment from
the same install, a Pod object with status, and an EndpointSlice. kube-proxy's NodePort is
stood in for by iptables REDIRECT in the gateway's namespace, from each NodePort to its target
port. Ingress credentials reach it as in a real cluster: istiod serves it the Secrets that
``credentialName`` names (SDS), which the install's Role lets it read.
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


def publish_gateway(lab: LabState, cluster: str, install: istio.Install) -> tuple[Pod, str]:
    """The gateway Pod (with status) and its EndpointSlice in the cluster; the pod's record
    and its service-account token."""
    info = lab.cluster(cluster)
    node_ports: NodePorts = info["node_ports"]
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
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
        cluster=install.cluster_id, mesh=lab.mesh(cluster), envoy=istio.envoy_binary(),
        workload=GATEWAY_NAME, ports=[v["target"] for v in node_ports.values()],
        extra=install.gateway_env,
    )
    start_proxy(lab, f"{GATEWAY_NAME}.istio-system@{cluster}", rec, tools, env,
                install.gateway_labels, token,
                ["proxy", "router", "--domain", "istio-system.svc.cluster.local",
                 "--proxyLogLevel=warning", "--log_output_level=default:info"])
