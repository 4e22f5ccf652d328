"""Status over the API: what the background reconciler last did per cluster and per object, a
way to ask for a run now, and the stored documents left out of the set (``/api/v1/problems``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from meshbridge.api.context import Editor, ServerDep, Viewer
from meshbridge.service.apply import status as stored_status
from meshbridge.service.resources import source_of

router = APIRouter()


@router.get("/api/v1/status", tags=["status"], summary="Last reconcile result of every cluster")
def all_status(server: ServerDep, _: Viewer) -> dict[str, Any]:
    with server.store.reading():
        items = stored_status(server.store)
    return {"items": items, "reconciler": server.reconciler is not None}


@router.get(
    "/api/v1/clusters/{name}/status",
    tags=["status"],
    summary="Last reconcile result of one cluster, per object",
    responses={404: {}},
)
def cluster_status(name: str, server: ServerDep, _: Viewer) -> dict[str, Any]:
    with server.store.reading():
        items = [s for s in stored_status(server.store) if s["cluster"] == name]
    if not items:
        raise HTTPException(404, f"no reconcile recorded for cluster {name!r}")
    return items[0]


@router.post(
    "/api/v1/reconcile",
    tags=["status"],
    status_code=202,
    summary="Reconcile the clusters now",
    responses={409: {}},
)
def reconcile_now(server: ServerDep, _: Editor) -> dict[str, str]:
    if server.reconciler is None:
        raise HTTPException(409, "this server runs no reconciler (serve --reconcile-interval 0)")
    server.reconciler.trigger()
    return {"status": "scheduled"}


@router.get(
    "/api/v1/problems",
    tags=["status"],
    summary="Stored documents left out of every render, and why",
)
def problems(server: ServerDep, _: Viewer) -> dict[str, Any]:
    """Documents the store holds that are not valid (a newer meshbridge with a stricter model,
    an edit behind the API's back: ``invalid``), or valid alone but not with the others
    (``excluded``). They are left out of every render; replace (PUT) or delete them. ``set``:
    problems of the rest no document is to blame for (nothing renders until they are fixed)."""
    flagged, unblamed = server.catalog.flagged()
    items = [
        {
            "kind": f.key[0],
            "namespace": f.key[1] or None,
            "name": f.key[2],
            "path": source_of(f.key),
            "resourceVersion": str(f.row.resource_version),
            "reason": f.reason,
            "problems": [{"path": p.path, "message": p.message} for p in f.problems],
        }
        for f in flagged
    ]
    return {"items": items, "set": [p.as_dict() for p in unblamed]}
