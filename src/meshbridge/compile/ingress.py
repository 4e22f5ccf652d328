"""External access through the ingress gateway's port 443, in every cluster that runs the server.

* SIMPLE or MUTUAL (a TCP, HTTP, HTTP2 or GRPC service): a Gateway server terminating TLS for the
  intent's host with the credential Secret (tls.crt, tls.key and, for MUTUAL, ca.crt) in
  istio-system, and a VirtualService sending the decrypted traffic to the service port.
* PASSTHROUGH (a TLS or HTTPS service): a Gateway server that passes the caller's TLS through,
  and a VirtualService ``tls`` route matching the host as SNI to the service port; the service
  presents its own certificate, so there is no credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshbridge.compile import naming
from meshbridge.compile.crosscluster import networking
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.pki_secrets import opaque_secret
from meshbridge.compile.snapshot import Snapshot
from meshbridge.model import ExternalAccess, InboundIntent

PORT = 443


def _server(ext: ExternalAccess, http: bool) -> dict[str, Any]:
    """The Gateway's one server for ``ext``."""
    if not ext.terminated:
        port = {"number": PORT, "name": "tls", "protocol": "TLS"}
        tls: dict[str, str] = {"mode": "PASSTHROUGH"}
    else:
        port = {"number": PORT, "name": "https", "protocol": "HTTPS" if http else "TLS"}
        tls = {"mode": ext.tls_mode, "credentialName": naming.credential_name(ext.host)}
    return {"port": port, "tls": tls, "hosts": [ext.host]}


def _routes(intent: InboundIntent, ext: ExternalAccess, http: bool) -> dict[str, Any]:
    """The VirtualService's routes: ``tls`` by SNI for PASSTHROUGH, else ``http`` or ``tcp``."""
    destination = {
        "destination": {
            "host": naming.local_host(intent.service_name, intent.namespace),
            "port": {"number": intent.spec.port},
        }
    }
    if not ext.terminated:
        return {
            "tls": [{"match": [{"port": PORT, "sniHosts": [ext.host]}], "route": [destination]}]
        }
    return {("http" if http else "tcp"): [{"match": [{"port": PORT}], "route": [destination]}]}


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
            http = intent.spec.protocol.is_http
            gateway = {"selector": {"istio": "ingressgateway"}, "servers": [_server(ext, http)]}
            service = {"hosts": [ext.host], "gateways": [name], **_routes(intent, ext, http)}
            material = ctx.material.ingress.get(ext.host) if ext.terminated else None
            for cluster in clusters:
                yield cluster, make(networking(snap), "Gateway", name, ns, gateway, owners)
                yield cluster, make(networking(snap), "VirtualService", name, ns, service, owners)
                if material is not None:
                    data = {"tls.crt": material.cert, "tls.key": material.key}
                    if ext.tls_mode == "MUTUAL" and material.ca is not None:
                        data["ca.crt"] = material.ca
                    credential = naming.credential_name(ext.host)
                    yield cluster, opaque_secret(credential, naming.ISTIO_SYSTEM, data, owners)
