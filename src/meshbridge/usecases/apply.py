"""apply, diff and status: the rendered desired state reconciled with live clusters.

An apply runs in three steps. ``prepare`` reads where the Apps with ``discover: {}`` run
(``usecases.placement``), discovers gateway addresses a Cluster leaves out, and renders exactly
as ``render`` does with that placement (same VIPs, same certificates, kept in the same store);
``reconcile`` brings every selected cluster to that state; ``finish`` records per-cluster,
per-object status in the store for ``status``. Every apply renders: what it sends is what
``render`` would write from the same intents and store, never an older render.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from meshbridge.compile.naming import OWNERS_ANNOTATION
from meshbridge.errors import ClusterError, InvalidInput, Problem
from meshbridge.kube import (
    ClusterAccess,
    ClusterReport,
    GatewayAddress,
    MeshRef,
    ReconcileOptions,
    discover_gateway,
    reconcile_all,
)
from meshbridge.store import LEGACY_ADOPTION, PlacementStore, Store
from meshbridge.usecases.istiod_roots import SEEN_ISTIOD_KIND
from meshbridge.usecases.ownership import mesh_ref, record_adoptions
from meshbridge.usecases.seen_cacerts import SEEN_CACERTS_KIND

if TYPE_CHECKING:
    from meshbridge.compile import Placement
    from meshbridge.compile.placement import Uncovered
    from meshbridge.kube.placement import Reading
    from meshbridge.model import Cluster, Intents, Located
    from meshbridge.usecases.placement import Decision
    from meshbridge.usecases.render import MaterialProvider, Rendered

STATUS_KIND = "status"
# Each cluster's propagation record (usecases.delivery): how far its last apply has got.
PROPAGATION_KIND = "propagation"
# Where earlier versions kept the render of the last apply (sealed; it held the clusters' CA
# keys): a store's next apply deletes it.
FORMER_RENDER_KIND = "apply-render"
# The blob kinds that record what was done rather than feed a render; the store does not count
# their writes as state changes (store.schema.UNCOUNTED_BLOBS, kept equal by a unit test).
VOLATILE_KINDS = frozenset(
    {
        STATUS_KIND,
        PROPAGATION_KIND,
        FORMER_RENDER_KIND,
        LEGACY_ADOPTION,
        SEEN_CACERTS_KIND,
        SEEN_ISTIOD_KIND,
    }
)

# How a change maps to the state of the object it touched.
OBJECT_STATE = {
    "create": "Applied",
    "update": "Applied",
    "unchanged": "Applied",
    "delete": "Deleted",
    "conflict": "Failed",
    "failed": "Failed",
    "skipped": "Pending",
}


@dataclass(frozen=True)
class Discovered:
    cluster: str
    address: GatewayAddress | None
    error: str = ""


LOCAL_CREDENTIAL = (
    "spec.kubeconfig.credential names a credential registered on a meshbridge server, which "
    "reconciles this cluster itself; a local apply reads a kubeconfig file: give "
    "spec.kubeconfig.path, or store the documents on the server (apply --server URL)"
)


def file_target(cluster: Cluster) -> ClusterAccess:
    """How the CLI reaches a Cluster: the kubeconfig file it names (``spec.kubeconfig.path``).
    One that names a server's credential instead fails with the reason."""
    ref = cluster.spec.kubeconfig
    if ref is None:
        return ClusterAccess(cluster.name, None)
    if ref.path is None:
        return ClusterAccess(cluster.name, None, ref.context, unusable=LOCAL_CREDENTIAL)
    return ClusterAccess(cluster.name, ref.path, ref.context)


def targets(intents: Intents, only: list[str] | None = None) -> list[ClusterAccess]:
    """Clusters to reconcile; unknown names in ``only`` are bad input."""
    every = []
    for doc in sorted(intents.clusters, key=lambda d: d.obj.name):
        every.append(file_target(doc.obj))
    return _choose(every, only)


def _choose(every: list[ClusterAccess], only: list[str] | None) -> list[ClusterAccess]:
    known = {t.name: t for t in every}
    unknown = [c for c in only or [] if c not in known]
    if unknown:
        raise InvalidInput(
            Problem("--cluster", 0, "", "", "", f"no Cluster named {c!r}") for c in unknown
        )
    return [known[name] for name in sorted(only)] if only else list(every)


async def _discover_all(
    intents: Intents, timeout: float, found: Placement | None = None
) -> list[Discovered]:
    """The gateway of every cluster that needs one (another cluster reaches it) and leaves its
    address out, read from the cluster."""

    async def one(doc: Located[Cluster]) -> Discovered:
        try:
            found = await discover_gateway(file_target(doc.obj), timeout)
        except ClusterError as exc:
            return Discovered(doc.obj.name, None, str(exc))
        return Discovered(doc.obj.name, found)

    candidates = [
        d
        for d in intents.clusters
        if (d.obj.spec.gateway is None or d.obj.spec.gateway.address is None)
        and d.obj.spec.kubeconfig is not None
    ]
    if not candidates:
        return []
    from meshbridge.compile.snapshot import build as snapshot
    from meshbridge.compile.validate import gateway_needs

    needed = gateway_needs(snapshot(intents, found))
    wanted = [d for d in candidates if d.obj.name in needed]
    return list(await asyncio.gather(*(one(d) for d in wanted)))


def _with_discovery_errors(
    exc: InvalidInput, intents: Intents, found: list[Discovered]
) -> InvalidInput:
    """The render's problems, and why discovery found no gateway for the clusters it tried."""
    failed = {d.cluster: d.error for d in found if d.address is None}
    extra = [
        Problem(
            doc.source,
            doc.index,
            "Cluster",
            doc.obj.name,
            "spec.gateway",
            f"gateway discovery failed: {failed[doc.obj.name]}",
        )
        for doc in intents.clusters
        if doc.obj.name in failed
    ]
    return InvalidInput([*exc.problems, *extra]) if extra else exc


def with_discovered_gateways(intents: Intents, found: list[Discovered]) -> Intents:
    """The intents with discovered gateway addresses filled in (an explicit port wins)."""
    from meshbridge.model import Cluster, GatewaySpec, Intents, Located

    by_name = {d.cluster: d.address for d in found if d.address is not None}
    docs: list[Located[Any]] = []
    for doc in intents.documents():
        obj = doc.obj
        address = by_name.get(obj.name) if isinstance(obj, Cluster) else None
        if isinstance(obj, Cluster) and address is not None:
            gateway = obj.spec.gateway
            port = gateway.port if gateway is not None and gateway.port else address.port
            gw = GatewaySpec.model_validate({"address": address.address, "port": port})
            spec = obj.spec.model_copy(update={"gateway": gw})
            doc = Located(obj.model_copy(update={"spec": spec}), doc.source, doc.index)
        docs.append(doc)
    return Intents.of(docs)


@dataclass
class Prepared:
    """What an apply reconciles: the chosen clusters, the mesh and every cluster's objects;
    the gateways and placements it discovered on the way (``placed``: None when no App is
    discovered) and what the declared splits do not cover of them."""

    mesh: MeshRef
    targets: list[ClusterAccess]
    objects: dict[str, list[dict[str, Any]]]
    found: list[Discovered]
    placed: Placed | None = None
    uncovered: tuple[Uncovered, ...] = ()


@dataclass(frozen=True)
class Placed:
    """Where the discovered Apps run, as an apply found them: what each cluster said and the
    decision taken on it (recorded, unless a dry run)."""

    readings: tuple[Reading, ...]
    decision: Decision


def discover_placement(
    intents: Intents, store: PlacementStore, options: ReconcileOptions, *, keep: bool
) -> Placed | None:
    """Read where the discovered Apps run from every cluster they may run in and decide (and,
    with ``keep``, record) their placement; None when no App is discovered. Invalid intents
    are refused first (InvalidInput), before any cluster is read."""
    from meshbridge import compile as mbcompile
    from meshbridge.usecases import placement

    snap = mbcompile.check(intents, before_apply=True)
    if not any(a.spec.discover is not None for a in snap.apps.values()):
        return None
    access = {d.obj.name: file_target(d.obj) for d in intents.clusters}
    readings = tuple(placement.read(snap, access, options))
    if keep:
        decision = placement.record(store, snap, readings, "apply")
    else:
        decision = placement.preview(store, snap, readings)
    return Placed(readings, decision)


def prepare(
    intents: Intents,
    store: PlacementStore,
    state_path: str | None,
    options: ReconcileOptions,
    only: list[str] | None = None,
) -> Prepared:
    """Discover where the discovered Apps run (recorded unless a dry run), then the gateways
    the intents leave out, then render as ``render`` does with that placement (a dry run keeps
    no new VIP or certificate)."""
    from meshbridge.compile.placement import coverage
    from meshbridge.usecases import pki as pki_service
    from meshbridge.usecases.render import build

    chosen = targets(intents, only)
    placed = discover_placement(intents, store, options, keep=not options.dry_run)
    where = placed.decision.placement if placed is not None else None
    found = asyncio.run(_discover_all(intents, options.timeout, where))
    intents = with_discovered_gateways(intents, found)
    material = pki_service.material_provider(state_path)
    injection = intents.mesh.spec.istio.sidecar_injection
    mesh = mesh_ref(store, intents.mesh.name, sidecar_injection=injection)
    try:
        if options.dry_run:
            rendered = _render_without_keeping(intents, store, material, where)
        else:
            rendered = build(intents, store, material, serialise=False, found=where)
    except InvalidInput as exc:
        raise _with_discovery_errors(exc, intents, found) from None
    uncovered = tuple(coverage(rendered.blueprint.snapshot))
    return Prepared(mesh, chosen, rendered.objects, found, placed, uncovered)


def reconcile(
    prepared: Prepared,
    options: ReconcileOptions,
    progress: Callable[[ClusterReport], None] | None = None,
) -> list[ClusterReport]:
    """Every chosen cluster reconciled with its objects."""
    return asyncio.run(
        reconcile_all(prepared.targets, prepared.objects, prepared.mesh, options, progress)
    )


def finish(store: Store, prepared: Prepared, reports: list[ClusterReport]) -> None:
    """Status recorded (not for a dry run: call it only for an apply)."""
    with store.transaction():
        record_status(store, reports, prepared.objects, prepared.targets)
        store.delete_blob(FORMER_RENDER_KIND, "last")


def record_status(
    store: Store,
    reports: list[ClusterReport],
    objects: dict[str, list[dict[str, Any]]],
    targets: list[ClusterAccess] | None = None,
) -> None:
    """Keep each cluster's report, per object, for ``status`` (CLI and API); a cluster applied
    in full has adopted its objects from before mesh identities (``usecases.ownership``).
    ``targets``: the kubeconfig files the CLI reached them with, kept (path and context, never
    the content) so that ``status --propagation`` can reach them again."""
    files = {t.name: t for t in targets or () if t.kubeconfig}
    with store.transaction():
        for report in reports:
            record = _status_record(report, objects)
            if report.cluster in files:
                target = files[report.cluster]
                record["kubeconfig"] = {"path": target.kubeconfig, "context": target.context}
            store.put_blob(STATUS_KIND, report.cluster,
                           json.dumps(record, sort_keys=True).encode())
        record_adoptions(store, reports)


def _render_without_keeping(
    intents: Intents, store: Store, material: MaterialProvider | None, found: Placement | None
) -> Rendered:
    """A dry run's render: what apply would write, in a rehearsal that keeps no new VIP or
    certificate."""
    from meshbridge.usecases.render import build

    with store.transaction(keep=False):
        return build(intents, store, material, serialise=False, found=found)


def _status_record(
    report: ClusterReport, objects: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """A cluster's record: its state, and each object's, with the resourceVersion the cluster
    holds it at (``usecases.propagation`` compares istiod's with it) and the intents it was
    made for (its ``meshbridge.dev/owners``); ``pruned``: what this apply deleted."""
    now = report.finished_at or datetime.now(UTC).isoformat(timespec="seconds")
    by_ref = {c.ref: c for c in report.outcome.changes}
    entries = []
    for obj in objects.get(report.cluster, []):
        meta = obj["metadata"]
        ref = f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        change = by_ref.get(ref)
        version = ""
        if report.state == "Unreachable":
            state, reason = "Unreachable", report.error
        elif change is None:
            state, reason = "Pending", report.error or "not attempted"
        else:
            state, reason = OBJECT_STATE[change.action], change.reason or change.action
            version = change.resource_version
        owners = (meta.get("annotations") or {}).get(OWNERS_ANNOTATION, "")
        entries.append({"object": ref, "state": state, "reason": reason, "time": now,
                        "resourceVersion": version,
                        "owners": [o for o in owners.split(",") if o]})
    return {
        "cluster": report.cluster,
        "state": report.state,
        "error": report.error,
        "time": now,
        "attempts": report.attempts,
        "objects": entries,
        "pruned": sorted(c.ref for c in report.outcome.changes if c.action == "delete"),
    }


def cluster_statuses(store: Store) -> list[dict[str, Any]]:
    """The recorded status of every cluster, by name."""
    return [json.loads(data) for _, data in sorted(store.list_blobs(STATUS_KIND).items())]
