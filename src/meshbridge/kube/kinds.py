"""The kinds meshbridge writes to clusters, as lightkube generic resources.

A table, not discovery: meshbridge only ever writes these kinds, and knowing their plural and
scope up front means no extra round trips before the first write. The order they are applied in
is :data:`meshbridge.compile.envelope.APPLY_ORDER`, defined there only; ``CLUSTER_KINDS`` follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources import core_v1

from meshbridge.compile.envelope import APPLY_ORDER


@dataclass(frozen=True)
class ClusterKind:
    group: str
    kind: str
    plural: str
    namespaced: bool = True

    def resource(self, version: str) -> Any:
        return _resource(self, version)


@cache
def _resource(kind: ClusterKind, version: str) -> Any:
    if not kind.group:  # core kinds: lightkube's own models (a generic twin would clash)
        return getattr(core_v1, kind.kind)
    make = create_namespaced_resource if kind.namespaced else create_global_resource
    return make(kind.group, version, kind.kind, kind.plural)


_TABLE: dict[str, ClusterKind] = {
    k.kind: k
    for k in (
        ClusterKind("", "Namespace", "namespaces", namespaced=False),
        ClusterKind("", "Secret", "secrets"),
        ClusterKind("install.istio.io", "IstioOperator", "istiooperators"),
        ClusterKind("networking.istio.io", "ServiceEntry", "serviceentries"),
        ClusterKind("networking.istio.io", "DestinationRule", "destinationrules"),
        ClusterKind("networking.istio.io", "Gateway", "gateways"),
        ClusterKind("networking.istio.io", "VirtualService", "virtualservices"),
        ClusterKind("security.istio.io", "AuthorizationPolicy", "authorizationpolicies"),
    )
}

# In apply order; a kind missing from the table fails here, at import (a test checks the
# table holds no kind APPLY_ORDER lacks).
CLUSTER_KINDS: dict[str, ClusterKind] = {kind: _TABLE[kind] for kind in APPLY_ORDER}

# Kinds meshbridge may prune. Namespaces are never pruned: deleting one deletes everything in it.
PRUNABLE = [k for k in APPLY_ORDER if k != "Namespace"]
