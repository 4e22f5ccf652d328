"""The mesh's graph as the server answers it: computed once per change, kept warm.

``usecases.graph`` does the work in two steps; this keeps each: the topology (compiling every
cluster's objects for their names: the costly part, about 0.4 s on the 100-cluster mesh) per
store revision, and the answer's bytes per revision *and* status records, since the reconciler
records status without moving the store's counters. A request that finds both unchanged costs
one read of the counters and the status records, and a hash.

Secrets are listed by name (``cacerts``, ingress credentials) only when the server has
certificate material (``serve --pki``), as its manifests do.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable

from meshbridge.server.catalog import Catalog
from meshbridge.store import Revisions
from meshbridge.usecases import delivery
from meshbridge.usecases import graph as graph_uc
from meshbridge.usecases.apply import STATUS_KIND
from meshbridge.wire.graph import MeshGraph

__all__ = ["Graphs"]


class Graphs:
    """The graph of a catalog's stored mesh, as JSON bytes; ``finish`` adds what the edge
    needs (the layout) before it is serialised."""

    def __init__(self, catalog: Catalog, *, secrets: bool,
                 finish: Callable[[MeshGraph], MeshGraph] = lambda g: g) -> None:
        self.catalog = catalog
        self.secrets = secrets
        self.finish = finish
        self._lock = threading.Lock()
        self._topology: tuple[Revisions, graph_uc.Topology] | None = None
        self._answer: tuple[tuple[Revisions, str], bytes] | None = None

    def json(self) -> bytes:
        """The current graph (documents and status as stored now), serialised."""
        store = self.catalog.store
        with store.reading():
            revs = store.revisions()
            blobs = store.list_blobs(STATUS_KIND)
            statuses = [json.loads(data) for _, data in sorted(blobs.items())]
            delivered = sorted(cluster for cluster, view in
                               delivery.recorded(store, statuses).items()
                               if view.state == "delivered")
        digest = hashlib.sha256()
        for name, data in sorted(blobs.items()):
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
        digest.update("\0".join(delivered).encode())
        key = (revs, digest.hexdigest())
        with self._lock:
            if self._answer is not None and self._answer[0] == key:
                return self._answer[1]
            topo = self._topology_at(revs)
            drawn = self.finish(graph_uc.graph(topo, statuses, f"{revs.resources}.{revs.state}",
                                               delivered))
            body = json.dumps(drawn.to_json(), ensure_ascii=False,
                              separators=(",", ":")).encode()
            self._answer = (key, body)
            return body

    def _topology_at(self, revs: Revisions) -> graph_uc.Topology:
        if self._topology is not None and self._topology[0] == revs:
            return self._topology[1]
        with self.catalog.writing():
            synced = self.catalog.sync()
            blueprint = self.catalog.blueprint()
            revs_now = self.catalog.revisions or synced
        topo = graph_uc.topology(blueprint, secrets=self.secrets)
        self._topology = (revs_now, topo)
        return topo
