"""The server's background reconciler: the stored mesh applied to its clusters, after every
change and every ``interval`` seconds, by exactly one replica per cluster at a time.

It is the CLI's reconciler (``meshbridge.kube``) fed from the server's catalog instead of files:
the same blueprint, VIPs and certificates the manifests endpoint serves. Clusters reach their API
servers through the credential their ``spec.kubeconfig`` names, registered by an admin
(:mod:`meshbridge.server.credentials`; the server reads no kubeconfig file); clusters without
``spec.kubeconfig`` are left out (their manifests are still served for GitOps). Gateway
discovery is a CLI feature (``meshbridge apply``); the server needs explicit gateway addresses.
Placements of Apps with ``discover: {}`` are watched (:mod:`meshbridge.server.placements`, on
this loop): when the recorded set moves (this replica's watch or another's), the mesh is
rendered again and the clusters whose objects changed are reconciled at once.

**Off the request path.** It runs in a thread of its own with its own event loop: kubeconfig and
TLS loading, the comparison of live and desired objects, and the render of the clusters'
objects (done outside the catalog's lock) never hold the API's event loop.

**Several replicas.** Every ``poll`` seconds a replica writes its heartbeat and renews the
leases it holds (:mod:`meshbridge.server.leases`), in a thread of its own so that a busy
reconcile does not delay it. A cluster is reconciled by the replica
:func:`~meshbridge.server.leases.owner` names among the live ones, once it holds the cluster's
lease, when the cluster is due: never reconciled, its last run unfinished (its replica died),
made for an older revision of the documents, failed more than ``retry`` seconds ago, or
older than ``interval``. Every run is recorded
(``reconciles``: replica, lease term, start and end on the database's clock, result), with the
per-object status beside it (``usecases.apply``). A run whose leases could not be renewed
is cancelled before they can expire; a replica that dies leaves its leases to expire, and the
next owner finishes its clusters: within ``lease_ttl`` + ``poll`` of its last renewal.

**Propagation.** Before each run the clusters' istiods are read, and after it the replica that
wrote watches what it wrote reach every proxy (:mod:`meshbridge.server.propagation`).

**What it refuses to do.** Like ``apply``, it never replaces the root of trust live in a cluster
(:mod:`meshbridge.usecases.rootguard`): such clusters get no write and a Failed status until the
root is brought back (``pki import``). While stored documents are flagged (invalid, left out of
renders: ``server.catalog``), it writes to no cluster: what they rendered would be pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshbridge import compile as mbcompile
from meshbridge.compile.snapshot import Snapshot
from meshbridge.errors import InvalidInput, MeshbridgeError
from meshbridge.kube import ClusterAccess, ClusterReport, MeshRef, ReconcileOptions, reconcile_all
from meshbridge.server.catalog import Catalog
from meshbridge.server.credentials import Credentials, cluster_targets
from meshbridge.server.leases import DEFAULT_TTL, FENCE, lease_name, owner, replica_id
from meshbridge.server.manifests import narrowed
from meshbridge.server.placements import PlacementWatcher
from meshbridge.server.propagation import Watches
from meshbridge.store import ClusterRuns, Lease
from meshbridge.usecases import rootguard
from meshbridge.usecases.apply import record_status
from meshbridge.usecases.ownership import mesh_ref
from meshbridge.usecases.render import MaterialProvider

log = logging.getLogger("meshbridge.reconciler")

SERVER_ADVICE = (
    "If the server's database lost its PKI, bring the live root back into it: meshbridge pki "
    "import --state DB --force --cert ROOT.pem --key ROOT-KEY.pem (ROOT.pem is root-cert.pem of "
    "the live cacerts; see docs/pki.md)."
)


@dataclass(frozen=True)
class Desired:
    """What the clusters should hold at one revision of the documents and of the discovered
    placements, or why to hold off."""

    revision: int
    targets: list[ClusterAccess]
    mesh: MeshRef | None
    objects: dict[str, list[dict[str, Any]]]
    held: str = ""  # not empty: write to no cluster, report this instead
    made: float = 0.0  # time.monotonic() when computed
    placements: int = 0  # the placements counter it was computed at
    snapshot: Snapshot | None = None  # the documents' (None: they cannot be rendered)


@dataclass
class _Batch:
    clusters: list[str]
    leases: dict[str, Lease]
    task: asyncio.Task[list[ClusterReport]] | None = None
    fence: asyncio.Timeout | None = None


@dataclass
class Reconciler:
    catalog: Catalog
    material: MaterialProvider | None = None
    interval: float = 60.0  # seconds between runs of a cluster when nothing changes
    poll: float = 1.0  # seconds between heartbeats, lease renewals and looks at the store
    options: ReconcileOptions = field(default_factory=ReconcileOptions)
    credentials: Credentials | None = None  # what Clusters' spec.kubeconfig.credential names
    replica: str = field(default_factory=replica_id)
    lease_ttl: float = DEFAULT_TTL
    retry: float = 10.0  # seconds after a failed run before the next (at most ``interval``)
    on_run: Callable[[str, str], None] | None = None  # (cluster, state) after each run
    # After each run, propagation is watched (server.propagation) for this long at most; the
    # seconds from a revision to a cluster's delivery go to ``on_delivered``.
    propagation_timeout: float = 120.0
    on_delivered: Callable[[str, float], None] | None = None
    _watches: Watches | None = None  # while run_forever runs
    _revision_seen: dict[int, float] = field(default_factory=dict)
    _desired: Desired | None = None
    _forced: bool = False
    _affected: set[str] = field(default_factory=set)  # clusters a placement change touched
    _placements: PlacementWatcher | None = None
    _batches: list[_Batch] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None
    _stopping: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    # ----------------------------------------------------------------------- the thread

    def start(self) -> None:
        """Run in a thread of its own, with its own event loop."""
        ready = threading.Event()

        def main() -> None:
            asyncio.run(self.run_forever(ready))

        self._thread = threading.Thread(target=main, name="meshbridge-reconciler", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the runs in progress (recorded as such), give the leases up, end the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def trigger(self) -> None:
        """Reconcile every cluster this replica owns as soon as possible (``POST /reconcile``)."""
        self._forced = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self, ready: threading.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        if ready is not None:
            ready.set()
        stop_keeping = threading.Event()
        keeper = threading.Thread(
            target=self._keep_leases, args=(stop_keeping, self._loop),
            name="meshbridge-leases", daemon=True,
        )
        keeper.start()
        self._watches = Watches(self.catalog.store, self.propagation_timeout,
                                self.options.timeout, self.on_delivered)
        wake = self._wake
        self._placements = PlacementWatcher(self.catalog.store, self.replica, self.lease_ttl,
                                            wake.set, timeout=self.options.timeout)
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except Exception:  # a bad tick must not end the loop; the next one may work
                    log.exception("background reconcile failed")
                waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, self._stopping)]
                await asyncio.wait(waits, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self._wake.clear()
        finally:
            stop_keeping.set()
            await self._watches.stop()
            self._watches = None
            await asyncio.to_thread(keeper.join)
            await self._placements.stop()
            for batch in self._batches:
                if batch.task is not None:
                    batch.task.cancel()
            await asyncio.gather(
                *(b.task for b in self._batches if b.task is not None), return_exceptions=True
            )
            with contextlib.suppress(MeshbridgeError):
                await asyncio.to_thread(self.catalog.store.forget_replica, self.replica)

    # ------------------------------------------------------------------------ one tick

    def _keep_leases(self, stop: threading.Event, loop: asyncio.AbstractEventLoop) -> None:
        """A thread of its own: every ``poll`` seconds, however busy the reconciler's event loop
        is (comparing objects is CPU work on it), the heartbeat and the leases of the runs in
        progress renewed; a run whose leases were renewed may write until FENCE of the lease
        time from the renewal (``loop.time()`` is ``time.monotonic()``)."""
        while True:
            renewing = time.monotonic()
            batches = list(self._batches)
            held = [lease_name(c) for b in batches for c in b.clusters]
            watcher = self._placements
            if watcher is not None:
                held += watcher.held()
            try:
                kept = self._beat(held)
            except Exception:  # the database is gone for now: the fences will stop the runs
                log.exception("cannot renew this replica's heartbeat and leases")
            else:
                until = renewing + FENCE * self.lease_ttl
                for batch in batches:
                    if all(lease_name(c) in kept for c in batch.clusters):
                        with contextlib.suppress(RuntimeError):  # the loop has ended
                            loop.call_soon_threadsafe(_extend, batch, until)
                if watcher is not None:
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(watcher.renewed, kept, renewing)
            if stop.wait(self.poll):
                return

    async def _tick(self) -> None:
        now, live, revision, placements = await asyncio.to_thread(self._look)
        desired = self._desired
        stale = desired is None or time.monotonic() - desired.made >= self.interval
        moved = desired is not None and desired.placements != placements
        if desired is None or stale or moved or desired.revision != revision:
            # (also every interval: certificates and VIPs change without a document write)
            before = desired
            desired = self._desired = await asyncio.to_thread(self._compute, desired)
            self._revision_seen.setdefault(desired.revision, time.monotonic())
            for old in sorted(self._revision_seen)[:-16]:  # the last few are enough
                del self._revision_seen[old]
            if moved and before is not None:  # the clusters whose objects a placement moved
                self._affected |= _changed(before, desired)
        if self._placements is not None:
            await self._placements.tick(desired.snapshot, desired.targets, live)
        busy = {c for b in self._batches for c in b.clusters}
        owned = [t.name for t in desired.targets if owner(t.name, live) == self.replica]
        mine = [c for c in owned if c not in busy]
        self._affected &= set(owned)  # the other replicas look after theirs; a busy one waits
        if not mine:
            self._forced = False
            return
        forced, self._forced = self._forced, False
        leases = await asyncio.to_thread(self._due_and_taken, mine, desired, now, forced)
        self._affected -= set(leases)
        if leases:
            batch = _Batch(sorted(leases), leases)
            batch.task = asyncio.create_task(self._run(batch, desired))
            self._batches.append(batch)

    def _beat(self, held: list[str]) -> set[str]:
        """Heartbeat and renew the leases held; the leases kept."""
        store = self.catalog.store
        store.heartbeat(self.replica, socket.gethostname(), os.getpid())
        return store.renew_leases(self.replica, held, self.lease_ttl)

    def _look(self) -> tuple[float, list[str], int, int]:
        """The database's time, the live replicas (this one always), the documents' revision
        and the placements' counter."""
        store = self.catalog.store
        now, replicas = store.replicas()
        live = {r.id for r in replicas if r.seen >= now - self.lease_ttl} | {self.replica}
        with store.reading():
            revisions = store.revisions()
        return now, sorted(live), revisions.resources, revisions.placements

    def _due_and_taken(
        self, mine: list[str], desired: Desired, now: float, forced: bool
    ) -> dict[str, Lease]:
        """The leases of this replica's clusters that are due, for those it could take."""
        store = self.catalog.store
        history = store.cluster_runs()
        taken = {}
        for cluster in mine:
            due = _due(history.get(cluster), desired.revision, now, self.interval, self.retry)
            if forced or due or cluster in self._affected:
                lease = store.acquire_lease(lease_name(cluster), self.replica, self.lease_ttl)
                if lease is not None:
                    taken[cluster] = lease
        return taken

    def _compute(self, before: Desired | None) -> Desired:
        """Targets (clusters with a kubeconfig), the mesh and their objects; rendered outside
        the catalog's lock so API requests do not wait for it."""
        catalog = self.catalog
        try:
            with catalog.writing():
                revs = catalog.sync()
                revision, placements = revs.resources, revs.placements
                blueprint = catalog.blueprint()
                intents = blueprint.snapshot.intents
                chosen = cluster_targets(intents, self.credentials)
                if not chosen:
                    return Desired(revision, [], None, {}, "", time.monotonic(), placements,
                                   blueprint.snapshot)
                names = {t.name for t in chosen}
                mesh = mesh_ref(
                    catalog.store,
                    intents.mesh.name,
                    sidecar_injection=intents.mesh.spec.istio.sidecar_injection,
                )
                material = None
                if self.material is not None:
                    material = self.material(catalog.store, narrowed(blueprint, names))
                flagged = catalog.has_flagged
        except InvalidInput as exc:  # the stored set cannot be planned at all
            revs_ = catalog.revisions
            revision = revs_.resources if revs_ else 0
            held = f"held: the stored documents cannot be rendered ({exc.problems[0]})"
            targets_ = before.targets if before else []
            return Desired(revision, targets_, None, {}, held, time.monotonic(),
                           revs_.placements if revs_ else 0)
        if flagged:
            held = (
                "held: stored documents are flagged invalid and left out of renders (GET "
                "/api/v1/problems); nothing is written, so nothing they rendered is pruned"
            )
            return Desired(revision, chosen, mesh, {}, held, time.monotonic(), placements,
                           blueprint.snapshot)
        objects = mbcompile.objects(blueprint, material, only=names)
        return Desired(revision, chosen, mesh, objects, "", time.monotonic(), placements,
                       blueprint.snapshot)

    # ------------------------------------------------------------------------ one batch

    async def reconcile_once(self) -> list[ClusterReport]:
        """Reconcile now every cluster whose lease this replica can take, whoever owns it, and
        return the reports (one-shot use and tests: the background loop's path, run outside
        it; leases held by another are skipped)."""
        desired = self._desired = await asyncio.to_thread(self._compute, self._desired)
        store = self.catalog.store

        def take() -> dict[str, Lease]:
            found = {
                t.name: store.acquire_lease(lease_name(t.name), self.replica, self.lease_ttl)
                for t in desired.targets
            }
            return {c: lease for c, lease in found.items() if lease is not None}

        leases = await asyncio.to_thread(take)
        if not leases:
            return []
        batch = _Batch(sorted(leases), leases)
        self._batches.append(batch)
        return await self._run(batch, desired)

    async def _run(self, batch: _Batch, desired: Desired) -> list[ClusterReport]:
        store = self.catalog.store
        runs = await asyncio.to_thread(self._start_runs, batch, desired)
        reports: list[ClusterReport] = []
        ended = "Failed"
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout_at(loop.time() + FENCE * self.lease_ttl) as fence:
                batch.fence = fence
                reports = await self._reconcile(batch.clusters, desired)
        except TimeoutError:
            ended = "lease lost: the database did not renew it; stopped before it expired"
            log.warning("clusters %s: %s", ", ".join(batch.clusters), ended)
        except asyncio.CancelledError:
            ended = "stopped: this replica shut down"
            raise
        finally:
            by_name = {r.cluster: r for r in reports}
            with contextlib.suppress(MeshbridgeError):
                await asyncio.shield(asyncio.to_thread(self._finish, runs, by_name, ended, desired))
                await asyncio.shield(
                    asyncio.to_thread(store.release_leases, self.replica,
                                      [lease_name(c) for c in batch.clusters])
                )
            self._batches.remove(batch)
        return reports

    def _start_runs(self, batch: _Batch, desired: Desired) -> dict[str, int]:
        store = self.catalog.store
        return {
            c: store.start_run(c, self.replica, batch.leases[c].term, desired.revision)
            for c in batch.clusters
        }

    def _finish(
        self, runs: dict[str, int], reports: dict[str, ClusterReport], ended: str,
        desired: Desired,
    ) -> None:
        store = self.catalog.store
        for cluster, run in runs.items():
            report = reports.get(cluster)
            state = report.state if report else "Failed"
            error = report.error if report else ended
            store.finish_run(run, state, error, len(desired.objects.get(cluster, [])))
            if self.on_run is not None:
                self.on_run(cluster, state)

    async def _reconcile(self, clusters: list[str], desired: Desired) -> list[ClusterReport]:
        store, objects = self.catalog.store, desired.objects
        if desired.held or desired.mesh is None:
            reports = [
                ClusterReport(c, "Failed", error=desired.held or "nothing to reconcile")
                for c in clusters
            ]
            await asyncio.to_thread(record_status, store, reports, {})
            log.warning("clusters %s: %s", ", ".join(clusters), desired.held)
            return reports
        checked = await rootguard.check(desired.targets, objects, self.options, set(clusters))
        if checked.replacements:
            message = f"{rootguard.describe(checked)}; nothing written. {SERVER_ADVICE}"
            reports = rootguard.refused(checked, message)
            await asyncio.to_thread(record_status, store, reports, objects)
            log.warning("%s", message)
            return reports
        watches = self._watches
        before = await watches.before(checked.targets) if watches is not None else {}
        found = await reconcile_all(checked.targets, objects, desired.mesh, self.options)
        reports = rootguard.merged(checked, found)
        await asyncio.to_thread(self._record, reports, objects, checked)
        if watches is not None:
            seen = self._revision_seen.get(desired.revision, desired.made)
            watches.after(checked.targets, reports, before, seen)
        for r in reports:
            if r.state != "Applied":
                log.warning("cluster %s: %s %s", r.cluster, r.state, r.error)
        return reports

    def _record(
        self,
        reports: list[ClusterReport],
        objects: dict[str, list[dict[str, Any]]],
        checked: rootguard.Checked,
    ) -> None:
        record_status(self.catalog.store, reports, objects)
        rootguard.record(self.catalog.store, checked, reports)


def _changed(before: Desired, after: Desired) -> set[str]:
    """The clusters whose objects differ between two computations (all, when either held)."""
    if before.held or after.held:
        return {t.name for t in after.targets}
    names = set(before.objects) | set(after.objects)
    return {c for c in names if before.objects.get(c) != after.objects.get(c)}


def _extend(batch: _Batch, until: float) -> None:
    """On the loop: the batch's leases were renewed; it may write until ``until``."""
    if batch.fence is not None:
        with contextlib.suppress(RuntimeError):  # the run is over
            batch.fence.reschedule(until)


def _due(
    runs: ClusterRuns | None, revision: int, now: float, interval: float, retry: float
) -> bool:
    """Whether a cluster needs a run: never reconciled, last run unfinished (its replica died:
    the lease decides whether it still runs), for an older revision, too long ago, or failed
    more than ``retry`` seconds ago."""
    if runs is None or runs.last.finished is None:
        return True
    if runs.last.state != "Applied" and now - runs.last.finished >= min(retry, interval):
        return True
    return runs.last.revision != revision or now - runs.last.finished >= interval
