"""The IstioOperator of each cluster: the seed's install configuration, values from Mesh.spec.istio
and the cluster's gateway port (the NodePort other clusters use to reach its 15443).

Two settings let the mesh's root of trust change under traffic (``docs/pki.md``, "What Istio
needs to change roots"); Istio leaves both off by default:

* istiod's ``ISTIO_MULTIROOT_MESH``: without it istiod ignores a ``cacerts`` whose
  ``root-cert.pem`` changed ("Multi root is disabled, updating new ROOT-CA not supported",
  pilot/pkg/bootstrap/istio_ca.go), and with it every later change of the intermediate, until
  it restarts; with it, it loads a bundle that adds or drops roots, publishes it
  (``istio-ca-root-cert``) and pushes it to the proxies;
* the proxies' ``PROXY_CONFIG_XDS_AGENT``: pilot-agent takes that push (the trust bundle, over
  PCDS) and hands the new roots to Envoy at once, instead of at its next certificate renewal.
"""

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
    proxy_metadata = {"PROXY_CONFIG_XDS_AGENT": "true"}
    pilot_env = {"ISTIO_MULTIROOT_MESH": "true"}
    if istio.dns_capture:
        proxy_metadata["ISTIO_META_DNS_CAPTURE"] = "true"
    if istio.workload_cert_ttl is not None:
        proxy_metadata["SECRET_TTL"] = istio.workload_cert_ttl  # what each proxy asks for
        pilot_env["DEFAULT_WORKLOAD_CERT_TTL"] = istio.workload_cert_ttl  # when none is asked
    mesh_config["defaultConfig"] = {"proxyMetadata": dict(sorted(proxy_metadata.items()))}
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
        "values": {
            "global": {"pilotCertProvider": "istiod"},
            "pilot": {"env": dict(sorted(pilot_env.items()))},
        },
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
