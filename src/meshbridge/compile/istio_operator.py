"""The IstioOperator of each cluster: the seed's install configuration, values from Mesh.spec.istio
and the cluster's gateway port (the NodePort other clusters use to reach its 15443)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj, make
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Snapshot


def spec_for(snap: Snapshot, cluster: str) -> dict[str, Any]:
    istio = snap.mesh.spec.istio
    mesh_config: dict[str, Any] = {
        "trustDomain": snap.mesh.spec.trust_domain,
        "outboundTrafficPolicy": {"mode": istio.outbound_traffic_policy},
        "accessLogFile": istio.access_log_file,
        "enableAutoMtls": True,
    }
    if istio.dns_capture:
        mesh_config["defaultConfig"] = {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}}
    return {
        "profile": istio.profile,
        "meshConfig": mesh_config,
        "components": {
            "ingressGateways": [
                {
                    "name": "istio-ingressgateway",
                    "enabled": True,
                    "k8s": {
                        "env": [{"name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat"}],
                        "service": {
                            "type": "NodePort",
                            "ports": [
                                {"port": 80, "targetPort": 8080, "name": "http2"},
                                {"port": 443, "targetPort": 8443, "name": "https"},
                                {
                                    "port": 15443,
                                    "targetPort": 15443,
                                    "name": "tls",
                                    "nodePort": snap.gateway_port(cluster),
                                },
                            ],
                        },
                    },
                }
            ]
        },
        "values": {"global": {"pilotCertProvider": "istiod"}},
    }


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    for cluster in ctx.selected(snap.clusters):
        yield (
            cluster,
            make(
                "install.istio.io/v1alpha1",
                "IstioOperator",
                naming.ISTIO_OPERATOR_NAME,
                naming.ISTIO_SYSTEM,
                spec_for(snap, cluster),
                [],
            ),
        )
