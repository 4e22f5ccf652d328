"""apply, diff and status: the rendered desired state reconciled with live clusters.

``apply`` renders exactly as ``render`` does (same VIPs, same certificates, kept in the same
store), discovers gateway addresses a Cluster leaves out, reconciles every selected cluster and
records per-cluster, per-object status in the store for ``status``.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshbridge.errors import InvalidInput, Problem
from meshbridge.kube import (
    ClusterReport,
    DiscoveryError,
    GatewayAddress,
    Options,
    Target,
    client_for,
    discover,
    reconcile_all,
)
from meshbridge.model import Cluster, GatewaySpec, Intents, Located
from meshbridge.service.render import MaterialProvider, Rendered, build
from meshbridge.store import Store

STATUS_KIND = "status"

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


def targets(intents: Intents, only: list[str] | None = None) -> list[Target]:
    """Clusters to reconcile; unknown names in ``only`` are bad input."""
    known = {d.obj.name: d for d in intents.clusters}
    unknown = [c for c in only or [] if c not in known]
    if unknown:
        raise InvalidInput(
            Problem("--cluster", 0, "", "", "", f"no Cluster named {c!r}") for c in unknown
        )
    names = sorted(only) if only else sorted(known)
    out = []
    for name in names:
        ref = known[name].obj.spec.kubeconfig
        out.append(Target(name, ref.path if ref else None, ref.context if ref else None))
    return out


async def _discover_all(intents: Intents, timeout: float) -> list[Discovered]:
    async def one(doc: Located[Cluster]) -> Discovered:
        ref = doc.obj.spec.kubeconfig
        target = Target(doc.obj.name, ref.path if ref else None, ref.context if ref else None)
        try:
            client = client_for(target, timeout)
        except Exception as exc:
            return Discovered(doc.obj.name, None, str(exc))
        try:
            return Discovered(doc.obj.name, await discover(client))
        except (DiscoveryError, OSError) as exc:
            return Discovered(doc.obj.name, None, str(exc))
        finally:
            await client.close()

    wanted = [
        d
        for d in intents.clusters
        if (d.obj.spec.gateway is None or d.obj.spec.gateway.address is None)
        and d.obj.spec.kubeconfig is not None
    ]
    return list(await asyncio.gather(*(one(d) for d in wanted)))


def with_discovered_gateways(intents: Intents, found: list[Discovered]) -> Intents:
    """The intents with discovered gateway addresses filled in (an explicit port wins)."""
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


def apply(
    intents: Intents,
    store: Store,
    options: Options,
    *,
    only: list[str] | None = None,
    material: MaterialProvider | None = None,
    progress: Callable[[ClusterReport], None] | None = None,
) -> tuple[list[ClusterReport], list[Discovered]]:
    """Render, then reconcile the selected clusters; status is recorded unless dry-running."""
    chosen = targets(intents, only)
    found = asyncio.run(_discover_all(intents, options.timeout))
    intents = with_discovered_gateways(intents, found)
    with quiet_gc():
        if options.dry_run:
            rendered = _render_without_keeping(intents, store, material)
        else:
            rendered = build(intents, store, material, serialise=False)
        reports = asyncio.run(
            reconcile_all(chosen, rendered.objects, intents.mesh.name, options, progress)
        )
    if not options.dry_run:
        record_status(store, reports, rendered.objects)
    return reports, found


def record_status(
    store: Store, reports: list[ClusterReport], objects: dict[str, list[dict[str, Any]]]
) -> None:
    """Keep each cluster's report, per object, for ``status`` (CLI and API)."""
    with store.transaction():
        for report in reports:
            store.put_blob(STATUS_KIND, report.cluster, _status_record(report, objects))


_quiet_depth = 0


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off the intents and the rendered mesh while they are
    parsed and built and while requests run (nested uses: the outermost one counts).

    Both are large, long-lived object graphs; every collection of the oldest generation would
    walk all of them, thousands of times over a big apply (measured: about 10 % of the client's
    CPU, which on a small machine the API servers then miss, and half of the render time of a
    no-op apply). Reference counting still frees everything as usual.
    """
    global _quiet_depth
    _quiet_depth += 1
    if _quiet_depth > 1:
        try:
            yield
        finally:
            _quiet_depth -= 1
        return
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 50, 50)
    try:
        yield
    finally:
        _quiet_depth -= 1
        gc.set_threshold(*threshold)
        gc.unfreeze()


class _Rollback(Exception):
    """Raised inside a transaction to undo it: a dry run keeps no new VIP or certificate."""


def _render_without_keeping(
    intents: Intents, store: Store, material: MaterialProvider | None
) -> Rendered:
    kept: list[Rendered] = []
    try:
        with store.transaction():
            kept.append(build(intents, store, material, serialise=False))
            raise _Rollback
    except _Rollback:
        pass
    return kept[0]


def _status_record(report: ClusterReport, objects: dict[str, list[dict[str, Any]]]) -> bytes:
    now = report.finished_at or datetime.now(UTC).isoformat(timespec="seconds")
    by_ref = {c.ref: c for c in report.outcome.changes}
    entries = []
    for obj in objects.get(report.cluster, []):
        meta = obj["metadata"]
        ref = f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        change = by_ref.get(ref)
        if report.state == "Unreachable":
            state, reason = "Unreachable", report.error
        elif change is None:
            state, reason = "Pending", report.error or "not attempted"
        else:
            state, reason = OBJECT_STATE[change.action], change.reason or change.action
        entries.append({"object": ref, "state": state, "reason": reason, "time": now})
    record = {
        "cluster": report.cluster,
        "state": report.state,
        "error": report.error,
        "time": now,
        "attempts": report.attempts,
        "objects": entries,
    }
    return json.dumps(record, sort_keys=True).encode()


def status(store: Store) -> list[dict[str, Any]]:
    """The recorded status of every cluster, by name."""
    return [json.loads(data) for _, data in sorted(store.list_blobs(STATUS_KIND).items())]
