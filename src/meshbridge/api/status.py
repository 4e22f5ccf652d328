"""Status over the API: what the background reconciler last did per cluster and per object, a
way to ask for a run now, and the stored documents left out of the set (``/api/v1/problems``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException

from meshbridge.api.context import Editor, ServerDep, Viewer
from meshbridge.errors import InvalidInput
from meshbridge.server.leases import CLUSTER
from meshbridge.store import ClusterRuns, ReconcileRun, ResourceStore
from meshbridge.usecases import delivery, placement
from meshbridge.usecases.apply import cluster_statuses
from meshbridge.wire.messages import (
    ClusterPropagation,
    ClusterStatus,
    ErrorItem,
    FlaggedDocument,
    PlacementAnswer,
    ProblemsAnswer,
    StatusAnswer,
    WatchView,
)
from meshbridge.wire.resources import source_of

router = APIRouter()


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _run(run: ReconcileRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "cluster": run.cluster,
        "replica": run.replica,
        "term": run.term,
        "revision": str(run.revision),
        "started": _time(run.started),
        "finished": _time(run.finished),
        "state": run.state,
        "error": run.error,
        "objects": run.objects,
    }


def _status(store: ResourceStore) -> dict[str, Any]:
    """Every cluster's last recorded result, with who reconciles it (its lease and last run),
    its last success and failures since, how far its last change has propagated, and the
    replicas on this database."""
    with store.reading():
        statuses = cluster_statuses(store)
        items = {s["cluster"]: s for s in statuses}
        runs = store.cluster_runs()
        now, leases = store.leases(CLUSTER)
        _, replicas = store.replicas()
        views = delivery.recorded(store, statuses)
        revision = store.revisions().resources
    held = {lease.name.removeprefix(CLUSTER): lease for lease in leases}
    for cluster in sorted(set(runs) - set(items)):
        items[cluster] = {"cluster": cluster, "state": "Pending", "error": "", "objects": []}
    for cluster, item in items.items():
        summary = runs.get(cluster)
        lease = held.get(cluster)
        item["lastRun"] = _run(summary.last) if summary else None
        item["lastSuccess"] = _time(summary.last_success) if summary else None
        item["failures"] = summary.failures if summary else 0
        item["lease"] = None if lease is None or lease.expires <= now else {
            "holder": lease.holder, "term": lease.term, "expires": _time(lease.expires)}
        view = views.get(cluster)
        item["propagation"] = view.to_json() if view else None
    return {
        "items": [items[c] for c in sorted(items)],
        "propagation": _revision(revision, runs, views),
        "time": _time(now),
        "replicas": [
            {"id": r.id, "host": r.host, "pid": r.pid, "started": _time(r.started),
             "seen": _time(r.seen)}
            for r in replicas
        ],
    }


def _revision(
    revision: int, runs: dict[str, ClusterRuns], views: dict[str, ClusterPropagation]
) -> dict[str, Any]:
    """Whether the documents' current revision is delivered: every reconciled cluster's last
    run applied it and its proxies all ACKed it."""
    pending = sorted(
        cluster for cluster, summary in runs.items()
        if summary.last.revision != revision or summary.last.state != "Applied"
        or cluster not in views or views[cluster].state != "delivered"
    )
    return {"items": [views[c].to_json() for c in sorted(views)], "revision": str(revision),
            "delivered": bool(runs) and not pending, "pending": pending}


def propagation_of(store: ResourceStore) -> Callable[[], dict[str, ClusterPropagation]]:
    """Each cluster's last propagation verdict, read in the store (for ``/metrics``)."""

    def views() -> dict[str, ClusterPropagation]:
        with store.reading():
            return delivery.recorded(store, cluster_statuses(store))

    return views


@router.get("/api/v1/status", tags=["status"], summary="Last reconcile result of every cluster")
def all_status(server: ServerDep, _: Viewer) -> dict[str, Any]:
    """Per cluster: state, error, time, each object's state, the last run (replica, lease term,
    start, end), the last success, failures since, the lease if one is held now, and how far
    its last change has got (``propagation``: applied, observed by istiod, delivered to every
    proxy); the replicas seen on this database (with their last heartbeat); and whether the
    documents' current revision is delivered to every cluster."""
    found = {**_status(server.store), "reconciler": server.reconciler is not None}
    return StatusAnswer.model_validate(found).to_json()


@router.get("/api/v1/reconciles", tags=["status"], summary="Reconcile runs, oldest first")
def reconciles(
    server: ServerDep,
    _: Viewer,
    cluster: Annotated[str | None, Query(max_length=63)] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Runs after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Who reconciled which cluster, under which lease term, from when to when (the database's
    clock; ``finished`` null while running or if its replica died), and how it ended. The last
    100 runs of each cluster are kept."""
    with server.store.reading():
        runs = server.store.runs(cluster, after=after, limit=limit)
    items = [_run(r) for r in runs]
    return {"items": items, "next": items[-1]["id"] if items else after}


@router.get(
    "/api/v1/clusters/{name}/status",
    tags=["status"],
    summary="Last reconcile result of one cluster, per object",
    responses={404: {}},
)
def cluster_status(name: str, server: ServerDep, _: Viewer) -> dict[str, Any]:
    items: list[dict[str, Any]] = _status(server.store)["items"]
    found = [s for s in items if s["cluster"] == name]
    if not found:
        raise HTTPException(404, f"no reconcile recorded for cluster {name!r}")
    return ClusterStatus.model_validate(found[0]).to_json()


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
        FlaggedDocument(
            kind=f.key[0],
            namespace=f.key[1] or None,
            name=f.key[2],
            path=source_of(f.key),
            resource_version=str(f.row.resource_version),
            reason=f.reason,
            problems=[ErrorItem(path=p.path, message=p.message) for p in f.problems],
        )
        for f in flagged
    ]
    return ProblemsAnswer(items=items, set=[ErrorItem.of(p) for p in unblamed]).to_json()


@router.get(
    "/api/v1/placements",
    tags=["status"],
    summary="Where the Apps with discover: {} run, as the server's watches keep it",
)
def placements(server: ServerDep, _: Viewer) -> dict[str, Any]:
    """Every discovered App's placements (found running, or kept for the grace period since
    ``gone``, until ``keptUntil``), how each cluster is watched (by which replica; watching, or
    failing with the error, since when; lists again after 410 Gone), and what the intents'
    weights and failover priorities do not cover of where the Apps run."""
    catalog = server.catalog
    try:
        with catalog.writing():
            catalog.sync()
            snap = catalog.blueprint().snapshot
    except InvalidInput:
        return PlacementAnswer(items=[]).to_json()  # nothing can be rendered: /problems says why
    store = server.store
    with store.reading():
        rows = store.placement_rows()
        watches = store.watch_records()
        now = store.clock()
    clusters = [WatchView(cluster=w.cluster, state=w.state, error=w.error, since=_time(w.since),
                          replica=w.replica, relists=w.relists) for w in watches]
    return placement.view(snap, rows, clusters, now).to_json()
