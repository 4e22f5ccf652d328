"""istiod's debug answers as the real, pinned istiod gave them in a mesh lab
(``tests/fixtures/istiod/``, captured by ``scripts/capture-istiod-answers``), and what tests
build from them: a cluster's reading, and the record of an apply that wrote exactly what istiod
holds.

States captured (``CAPTURED.json``): ``synced`` (cluster1, cluster2 of examples/sleep-httpbin,
every proxy ACKed), ``nack`` (cluster1: sleep's sidecar NACKing a broken EnvoyFilter applied by
hand), ``disconnected`` (cluster2: httpbin's proxy stopped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshbridge.kube.istiod import (
    ClusterReading,
    Replica,
    decode_configz,
    decode_syncz,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "istiod"


def answer(state: str, cluster: str, what: str) -> bytes:
    """The bytes istiod answered: ``what`` is configz or syncz."""
    return (FIXTURES / state / f"{cluster}.{what}.json").read_bytes()


def replica(state: str, cluster: str, pod: str | None = None) -> Replica:
    return Replica(pod or f"istiod-{cluster}", decode_configz(answer(state, cluster, "configz")),
                   decode_syncz(answer(state, cluster, "syncz")))


def reading(state: str, cluster: str, *replicas: Replica) -> ClusterReading:
    """A cluster read whole: its captured istiod (or the replicas given)."""
    return ClusterReading(cluster, "read", list(replicas) or [replica(state, cluster)])


def applied(state: str, cluster: str, **more: Any) -> dict[str, Any]:
    """The record of an apply that left the cluster holding exactly the Istio objects istiod
    held when captured (at those resourceVersions), as ``usecases.apply`` keeps it."""
    objects = [
        {"object": f"{kind}/{ns}/{name}", "state": "Applied", "reason": "unchanged",
         "resourceVersion": version, "owners": ["InboundIntent/bar/httpbin"],
         "time": "2026-12-07T05:37:59+00:00"}
        for (kind, ns, name), version in sorted(decode_configz(answer(state, cluster,
                                                                      "configz")).items())
    ]
    return {"cluster": cluster, "state": "Applied", "error": "", "attempts": 1,
            "time": "2026-12-07T05:37:59+00:00", "objects": objects, "pruned": [], **more}
