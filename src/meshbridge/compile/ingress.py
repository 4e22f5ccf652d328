"""External access: a Gateway on the ingress gateway's port 443 terminating TLS (SIMPLE or MUTUAL)
for the intent's host, and a VirtualService sending it to the service, in every cluster that runs
the server; the credential Secret (tls.crt, tls.key and, for MUTUAL, ca.crt) in istio-system."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshbridge.compile import naming
from meshbridge.compile.crosscluster import networking
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.secrets import opaque_secret
from meshbridge.compile.snapshot import Snapshot


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    for intents in snap.services.values():
        for intent in intents:
            ext = intent.spec.external
            clusters = ctx.selected(snap.intent_placement(intent))
            if ext is None or not clusters:
                continue
            ns = intent.namespace
            owners = [owner_ref("InboundIntent", ns, intent.name)]
            name = naming.ingress_name(intent.name)
            credential = naming.credential_name(ext.host)
            http = intent.spec.protocol.is_http
            gateway = {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {
                            "number": 443,
                            "name": "https",
                            "protocol": "HTTPS" if http else "TLS",
                        },
                        "tls": {"mode": ext.tls_mode, "credentialName": credential},
                        "hosts": [ext.host],
                    }
                ],
            }
            route: dict[str, Any] = {
                "match": [{"port": 443}],
                "route": [
                    {
                        "destination": {
                            "host": naming.local_host(intent.service_name, ns),
                            "port": {"number": intent.spec.port},
                        }
                    }
                ],
            }
            service = {
                "hosts": [ext.host],
                "gateways": [name],
                ("http" if http else "tcp"): [route],
            }
            material = ctx.material.ingress.get(ext.host)
            for cluster in clusters:
                yield cluster, make(networking(snap), "Gateway", name, ns, gateway, owners)
                yield cluster, make(networking(snap), "VirtualService", name, ns, service, owners)
                if material is not None:
                    data = {"tls.crt": material.cert, "tls.key": material.key}
                    if ext.tls_mode == "MUTUAL" and material.ca is not None:
                        data["ca.crt"] = material.ca
                    yield cluster, opaque_secret(credential, naming.ISTIO_SYSTEM, data, owners)
