"""One cluster's rendered manifests, served from the stored documents, computed incrementally.

A full render of a large mesh costs seconds; a server answering ``GET .../manifests`` for one
cluster must not pay that on every request, nor after every write. So:

* the catalog keeps the validated documents and the blueprint (VIPs) warm, updated on each write;
* only the asked cluster's objects are computed (``compile.objects(..., only={cluster})``);
* a :class:`~meshbridge.output.emitter.DumpMemo` per cluster keeps the YAML of unchanged
  objects, so only what a write changed is serialised again;
* the answer is cached per cluster, keyed by the store's :class:`Revisions`: any write, by this
  process or another one, makes it stale.

The JSON answer is a :class:`~meshbridge.wire.messages.ManifestList` of the objects in apply
order (what ``render --server`` reads); the YAML answer is exactly what ``meshbridge render``
writes for that cluster, its files' contents joined with ``---`` lines, for a person or a
pipeline that wants one stream. Output holding a Secret
(certificate material) is never cached: key material is kept no longer than the request. The
material provider is handed the blueprint narrowed to the one cluster, so it loads (or issues) that
cluster's CA only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from meshbridge import compile as mbcompile
from meshbridge.compile.envelope import Obj
from meshbridge.errors import NotFound
from meshbridge.output.emitter import DumpMemo, ManifestFile
from meshbridge.output.emitter import files as manifest_files
from meshbridge.server.catalog import Catalog
from meshbridge.store import Revisions
from meshbridge.usecases.render import MaterialProvider
from meshbridge.wire.messages import ListMeta, ManifestList

__all__ = ["ClusterManifests", "Manifests", "narrowed"]


@dataclass(frozen=True)
class ClusterManifests:
    """One cluster's output: objects, the render's files (path -> (bytes, private key holder)) and both
    serialisations the API serves."""

    cluster: str
    revisions: Revisions
    objects: list[Obj]
    files: dict[str, ManifestFile]
    yaml: bytes
    json: bytes

    @property
    def etag(self) -> str:
        return _etag(self.revisions)


def _etag(revisions: Revisions) -> str:
    """The store revision an answer is of: the documents', state's and placements' counters."""
    return f"{revisions.resources}.{revisions.state}.{revisions.placements}"


class Manifests:
    """Per-cluster manifests of a catalog's store, with a material provider for certificates."""

    def __init__(
        self,
        catalog: Catalog,
        material: MaterialProvider | None = None,
        on_render: Callable[[float], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.material = material
        self.on_render = on_render
        self._cache: dict[str, ClusterManifests] = {}
        self._memos: dict[str, DumpMemo] = {}

    def for_cluster(self, cluster: str) -> ClusterManifests:
        """The cluster's manifests at the store's current revisions; NotFound for no cluster."""
        store = self.catalog.store
        with store.reading():
            revs = store.revisions()
        hit = self._cache.get(cluster)
        if hit is not None and hit.revisions == revs:
            return hit
        with self.catalog.lock:
            hit = self._cache.get(cluster)
            if hit is not None and hit.revisions == revs:
                return hit
            result = self._render(cluster)
            if any(holder is not None for _, holder in result.files.values()):
                self._cache.pop(cluster, None)
            else:
                self._cache[cluster] = result
            return result

    def _render(self, cluster: str) -> ClusterManifests:
        store = self.catalog.store
        with self.catalog.writing():
            self.catalog.sync()
            blueprint = self.catalog.blueprint()
            if cluster not in blueprint.snapshot.clusters:
                self._cache.pop(cluster, None)
                self._memos.pop(cluster, None)
                raise NotFound(f"Cluster {cluster!r} not found")
            started = time.perf_counter()
            material = None
            if self.material is not None:
                material = self.material(store, narrowed(blueprint, {cluster}))
            objs = mbcompile.objects(blueprint, material, only={cluster}).get(cluster, [])
            memo = self._memos.setdefault(cluster, DumpMemo())
            files = manifest_files({cluster: objs}, memo)
            revs = store.revisions()
        if self.on_render is not None:
            self.on_render(time.perf_counter() - started)
        self._forget_removed(blueprint)
        answer = ManifestList.model_construct(
            metadata=ListMeta(resource_version=_etag(revs)), items=objs
        )
        stream = b"---\n".join(data for data, _ in files.values())
        return ClusterManifests(cluster, revs, objs, files, stream, answer.model_dump_json(by_alias=True).encode())

    def _forget_removed(self, blueprint: mbcompile.Blueprint) -> None:
        for gone in set(self._memos) - set(blueprint.snapshot.clusters):
            self._memos.pop(gone, None)
            self._cache.pop(gone, None)


def narrowed(blueprint: mbcompile.Blueprint, clusters: Collection[str]) -> mbcompile.Blueprint:
    """The blueprint as the material provider should see it for some clusters' output: only those
    clusters, so certificate material is loaded (or issued) for them alone, not for the mesh."""
    snap = blueprint.snapshot
    only = dataclasses.replace(snap, clusters={c: snap.clusters[c] for c in clusters})
    return mbcompile.Blueprint(only, blueprint.vips)
