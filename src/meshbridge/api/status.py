"""Reconcile status over the API: what the background reconciler last did per cluster and per
object, and a way to ask for a run now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from meshbridge.api.context import Editor, ServerDep, Viewer
from meshbridge.service.apply import cluster_statuses

router = APIRouter()


@router.get("/api/v1/status", tags=["status"], summary="Last reconcile result of every cluster")
def all_status(server: ServerDep, _: Viewer) -> dict[str, Any]:
    with server.store.reading():
        items = cluster_statuses(server.store)
    return {"items": items, "reconciler": server.reconciler is not None}


@router.get(
    "/api/v1/clusters/{name}/status",
    tags=["status"],
    summary="Last reconcile result of one cluster, per object",
    responses={404: {}},
)
def cluster_status(name: str, server: ServerDep, _: Viewer) -> dict[str, Any]:
    with server.store.reading():
        items = [s for s in cluster_statuses(server.store) if s["cluster"] == name]
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
