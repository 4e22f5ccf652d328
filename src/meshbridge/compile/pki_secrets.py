"""Secrets carrying certificate material: ``cacerts`` for Istio's plug-in CA, ingress credentials.

Values go in ``data`` (base64), as the API server stores them, so a server-side apply and a
later read compare equal.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj, make
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Snapshot


def opaque_secret(name: str, namespace: str, data: Mapping[str, str], owners: list[str]) -> Obj:
    obj = make("v1", "Secret", name, namespace, None, owners)
    obj["type"] = "Opaque"
    obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())}
    return obj


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    for cluster in ctx.selected(snap.clusters):
        ca = ctx.material.cacerts.get(cluster)
        if ca is None:
            continue
        data = {
            "ca-cert.pem": ca.ca_cert,
            "ca-key.pem": ca.ca_key,
            "root-cert.pem": ca.root_cert,
            "cert-chain.pem": ca.cert_chain,
        }
        yield cluster, opaque_secret(naming.CACERTS_NAME, naming.ISTIO_SYSTEM, data, [])
