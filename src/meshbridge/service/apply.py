"""apply, diff and status: the rendered desired state reconciled with live clusters.

An apply runs in three steps. ``prepare`` renders exactly as ``render`` does (same VIPs, same
certificates, kept in the same store) and discovers gateway addresses a Cluster leaves out;
``reconcile`` brings every selected cluster to that state; ``finish`` records per-cluster,
per-object status in the store for ``status``.

The render an apply made is kept in the store, sealed with the state key (it holds the
clusters' CA keys), under a digest of everything it was made from: the intent files as read,
meshbridge's version, and every VIP, certificate and key in the store. When the next apply
reads the same files against the same store, ``prepare`` takes the kept render instead of
parsing and rendering again, which is most of the work of an apply that changes nothing. A
render that needed gateway discovery (whose answer may change) or a dry run is never kept.

The models and the compiler are imported only when a render is made.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from meshbridge import __version__
from meshbridge.errors import InvalidInput, Problem, SealingError
from meshbridge.kube import (
    ClusterReport,
    DiscoveryError,
    GatewayAddress,
    MeshRef,
    Options,
    Target,
    client_for,
    discover,
    reconcile_all,
)
from meshbridge.pki.sealing import row_aad
from meshbridge.service.credentials import file_target
from meshbridge.service.holdings import KIND_HELD
from meshbridge.service.ownership import mesh_ref, record_adoptions
from meshbridge.service.statekey import load_sealer
from meshbridge.source import Source
from meshbridge.store import LEGACY_ADOPTION, Store

if TYPE_CHECKING:
    from meshbridge.model import Cluster, Intents, Located
    from meshbridge.service.render import MaterialProvider, Rendered

STATUS_KIND = "status"
KEPT_KIND = "apply-render"  # the kept render (one per store)
KEPT_NAME = "last"
KEPT_FORMAT = 2
# Blobs an apply writes that are not render inputs: left out of the store's digest.
VOLATILE_KINDS = frozenset({STATUS_KIND, KEPT_KIND, LEGACY_ADOPTION, KIND_HELD})

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
    every = []
    for doc in sorted(intents.clusters, key=lambda d: d.obj.name):
        every.append(file_target(doc.obj))
    return _choose(every, only)


def _choose(every: list[Target], only: list[str] | None) -> list[Target]:
    known = {t.name: t for t in every}
    unknown = [c for c in only or [] if c not in known]
    if unknown:
        raise InvalidInput(
            Problem("--cluster", 0, "", "", "", f"no Cluster named {c!r}") for c in unknown
        )
    return [known[name] for name in sorted(only)] if only else list(every)


async def _discover_all(intents: Intents, timeout: float) -> list[Discovered]:
    """The gateway of every cluster that needs one (another cluster reaches it) and leaves its
    address out, read from the cluster."""

    async def one(doc: Located[Cluster]) -> Discovered:
        target = file_target(doc.obj)
        try:
            client = client_for(target, timeout)
        except Exception as exc:
            return Discovered(doc.obj.name, None, f"kubeconfig: {exc}")
        try:
            return Discovered(doc.obj.name, await discover(client))
        except DiscoveryError as exc:
            return Discovered(doc.obj.name, None, str(exc))
        finally:
            await client.close()

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

    needed = gateway_needs(snapshot(intents))
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
    """What an apply reconciles: the chosen clusters, the mesh and every cluster's objects."""

    mesh: MeshRef
    targets: list[Target]
    objects: dict[str, list[dict[str, Any]]]
    found: list[Discovered]
    kept: bool  # taken from the kept render
    keep: Callable[[], None] | None = None  # keeps this render for the next apply


def prepare(
    sources: list[Source],
    store: Store,
    state_path: str | None,
    options: Options,
    only: list[str] | None = None,
    *,
    intents: Intents | None = None,
) -> Prepared:
    """The kept render when ``sources`` and the store are what it was made from; otherwise
    parse (unless ``intents``, parsed from ``sources``, is given), discover gateways and render
    (kept unless dry-running or discovery was needed)."""
    if intents is None:
        kept = _load_kept(store, state_path, sources)
        if kept is not None:
            every = [Target(name, path, context) for name, path, context in kept.clusters]
            mesh = mesh_ref(store, kept.mesh, sidecar_injection=kept.sidecar_injection)
            return Prepared(mesh, _choose(every, only), kept.objects, [], kept=True)

    from meshbridge.service import pki as pki_service
    from meshbridge.service.render import build, parse

    if intents is None:
        intents = parse(sources)
    chosen = targets(intents, only)
    found = asyncio.run(_discover_all(intents, options.timeout))
    intents = with_discovered_gateways(intents, found)
    material = pki_service.material_provider(state_path)
    injection = intents.mesh.spec.istio.sidecar_injection
    mesh = mesh_ref(store, intents.mesh.name, sidecar_injection=injection)
    try:
        if options.dry_run:
            rendered = _render_without_keeping(intents, store, material)
            return Prepared(mesh, chosen, rendered.objects, found, kept=False)
        rendered = build(intents, store, material, serialise=False)
    except InvalidInput as exc:
        raise _with_discovery_errors(exc, intents, found) from None
    prepared = Prepared(mesh, chosen, rendered.objects, found, kept=False)
    if not found:  # discovered addresses are inputs the digest does not cover
        clusters = [(t.name, t.kubeconfig, t.context) for t in targets(intents)]
        key = _render_key(sources, store)
        record = _Kept(key, mesh.name, injection, clusters, prepared.objects)
        prepared.keep = lambda: _save_kept(store, state_path, record)
    return prepared


def reconcile(
    prepared: Prepared,
    options: Options,
    progress: Callable[[ClusterReport], None] | None = None,
) -> list[ClusterReport]:
    """Every chosen cluster reconciled with its objects."""
    with quiet_gc():
        return asyncio.run(
            reconcile_all(prepared.targets, prepared.objects, prepared.mesh, options, progress)
        )


def finish(store: Store, prepared: Prepared, reports: list[ClusterReport]) -> None:
    """Status recorded and the render kept (not for a dry run: call it only for an apply)."""
    with store.transaction():
        record_status(store, reports, prepared.objects)
        if prepared.keep is not None:
            prepared.keep()


class _Kept(msgspec.Struct, array_like=True):
    key: str
    mesh: str
    sidecar_injection: bool
    clusters: list[tuple[str, str | None, str | None]]
    objects: dict[str, list[dict[str, Any]]]


def _render_key(sources: list[Source], store: Store) -> str:
    digest = hashlib.sha256(f"meshbridge {__version__} render {KEPT_FORMAT}".encode())
    for source in sources:
        for part in (source.name.encode(), source.text.encode()):
            digest.update(b"%d:" % len(part))
            digest.update(part)
    digest.update(store.fingerprint(VOLATILE_KINDS).encode())
    return digest.hexdigest()


def _load_kept(store: Store, state_path: str | None, sources: list[Source]) -> _Kept | None:
    sealed = store.get_blob(KEPT_KIND, KEPT_NAME)
    if sealed is None:
        return None  # and no state key is looked for (or created), no digest made
    try:
        data = load_sealer(state_path, store).open(sealed, row_aad(KEPT_KIND, KEPT_NAME))
        kept = msgspec.json.decode(data, type=_Kept)
    except (SealingError, msgspec.DecodeError):
        return None  # not readable with this key or format: render again (and say why then)
    return kept if kept.key == _render_key(sources, store) else None


def _save_kept(store: Store, state_path: str | None, record: _Kept) -> None:
    data = msgspec.json.encode(record)
    sealed = load_sealer(state_path, store).seal(data, row_aad(KEPT_KIND, KEPT_NAME))
    store.put_blob(KEPT_KIND, KEPT_NAME, sealed)


def record_status(
    store: Store, reports: list[ClusterReport], objects: dict[str, list[dict[str, Any]]]
) -> None:
    """Keep each cluster's report, per object, for ``status`` (CLI and API); a cluster applied
    in full has adopted its objects from before mesh identities (``service.ownership``)."""
    with store.transaction():
        for report in reports:
            store.put_blob(STATUS_KIND, report.cluster, _status_record(report, objects))
        record_adoptions(store, reports)


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
    from meshbridge.service.render import build

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
