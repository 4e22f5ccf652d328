"""Generate large, valid meshes of intent documents for benchmarks and tests.

Deterministic for the same arguments. Server apps are spread round-robin over clusters and
namespaces; every server has ``clients`` client apps placed in other clusters; every third server
(by default) runs in two clusters with a 50/50 load-balancing split.
"""

from __future__ import annotations

from typing import Any

API = "meshbridge.dev/v1alpha1"


def _doc(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def generate(
    clusters: int = 100,
    servers: int = 2000,
    clients: int = 2,
    lb_every: int = 3,
    namespaces: int = 50,
    egress: int = 0,
    regions: int = 0,
) -> list[dict[str, Any]]:
    """The mesh's documents; with ``regions``, cluster i is in region ``r<i % regions>``
    (``topology.kubernetes.io/region``, which the picture groups clusters by)."""
    docs = [_doc("Mesh", "default", {"vipPool": "240.0.0.0/8", "rootCA": {"keyAlgorithm": "ECDSA-P256"}})]
    names = [f"c{i:03d}" for i in range(clusters)]
    for i, name in enumerate(names):
        labels = {"zone": f"z{i % 4}"}
        if regions:
            labels["topology.kubernetes.io/region"] = f"r{i % regions}"
        docs.append(_doc("Cluster", name, {"gateway": {"address": f"10.{i // 250}.{i % 250}.1"}},
                         labels=labels))
    for i in range(servers):
        ns = f"ns{i % namespaces}"
        home = i % clusters
        balanced = clusters > 1 and lb_every > 0 and i % lb_every == 0
        placed = [names[home], names[(home + 1) % clusters]] if balanced else [names[home]]
        docs.append(_doc("App", f"svc{i}", {"clusters": placed}, ns))
        intent: dict[str, Any] = {
            "app": f"svc{i}",
            "port": 8000 + i % 7,
            "protocol": ["HTTP", "TCP", "GRPC"][i % 3],
            "clients": [],
        }
        for k in range(clients):
            client = f"cli{i}-{k}"
            where = names[(home + 2 + k) % clusters]
            docs.append(_doc("App", client, {"clusters": [where]}, ns))
            intent["clients"].append({"app": client})
        if balanced:
            intent["loadBalancing"] = {"weights": {placed[0]: 50, placed[1]: 50}}
        docs.append(_doc("InboundIntent", f"svc{i}", intent, ns))
    for i in range(egress):
        docs.append(_doc("ExternalService", f"ext{i}", {
            "hosts": [f"db{i}.example.com"],
            "ports": [{"number": 3306, "name": "mysql", "protocol": "TCP"}],
            "endpoints": [{"address": f"172.16.{i // 250}.{i % 250 + 1}"}],
        }, "default"))
    return docs
