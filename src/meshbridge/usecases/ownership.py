"""Which objects in the clusters are this mesh's: the identity its state store was given.

Every store holds one mesh identity, minted once when its schema is made (or upgraded to hold
one) and never changed; apply labels everything it writes with it (``meshbridge.dev/mesh-id``)
and updates or prunes only objects that carry it. A store that applied before identities
existed lists the clusters it applied to (``legacy-adoption`` blobs, made by the migration);
there, objects labelled with the mesh's name and no identity are adopted by the next apply, and
the cluster leaves the list once an apply of it succeeds in full.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshbridge.kube import ClusterReport, MeshRef
from meshbridge.store import LEGACY_ADOPTION, PREVIOUS_MESH_ID, Store


def mesh_ref(store: Store, name: str, *, sidecar_injection: bool = True) -> MeshRef:
    """The mesh as a reconcile needs it: name, identity, clusters still to adopt in."""
    adopt = frozenset(store.list_blobs(LEGACY_ADOPTION))
    previous = frozenset(store.list_blobs(PREVIOUS_MESH_ID))
    return MeshRef(name, store.mesh_id(), adopt, sidecar_injection, previous)


def record_adoptions(store: Store, reports: Iterable[ClusterReport]) -> None:
    """Clusters applied in full hold no more objects to adopt: theirs carry the identity now."""
    pending = store.list_blobs(LEGACY_ADOPTION)
    for report in reports:
        if report.state == "Applied" and report.cluster in pending:
            store.delete_blob(LEGACY_ADOPTION, report.cluster)
