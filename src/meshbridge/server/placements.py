"""The server keeps discovered placements current: the replica holding a cluster's placement
lease watches it, and records what the watch reads.

For every cluster a discovered App may run in (and that the server reaches: a Cluster with a
credential), the replica that rendezvous hashing ranks first among the live ones
(``server.leases.owner``, as for reconciles) takes the lease ``placement:<cluster>`` and, while
it holds it, runs a :class:`~meshbridge.kube.watching.ClusterWatch` of that cluster: a list and
a watch per kind, 410 answered by a new list, errors by a back-off. The lease is renewed with
the replica's others (the reconciler's lease keeper); a watch whose lease could not be renewed
is stopped before the lease can expire, so two replicas never record one cluster's readings at
the same time; when the cluster's owner changes (a replica comes or goes), the watch moves.

Each reading is recorded by ``usecases.placement.record`` (one decision at a time across
replicas: the store's placement lock), audited as the replica, and when the set of placements
moved the reconciler is woken: it renders again, and applies the clusters whose objects
changed, within a second or two. Every few seconds the grace periods are looked at, and the ones
that are over are ended (by whichever replica sees it first). How each watch is doing is kept
in the store (``placement_watches``) for ``status`` and ``GET /api/v1/placements``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meshbridge.compile.placement import discovered
from meshbridge.compile.snapshot import Snapshot
from meshbridge.errors import MeshbridgeError
from meshbridge.kube import ClusterAccess
from meshbridge.kube.placement import Look, Reading
from meshbridge.kube.watching import ClusterWatch, WatchState
from meshbridge.server.leases import FENCE, owner
from meshbridge.store import ResourceStore
from meshbridge.usecases import placement

__all__ = ["PLACEMENT", "PlacementWatcher", "lease_name"]

log = logging.getLogger("meshbridge.placements")

PLACEMENT = "placement:"  # lease names: placement:<cluster>
SETTLE_EVERY = 2.0  # seconds between looks at grace periods that may be over


def lease_name(cluster: str) -> str:
    return f"{PLACEMENT}{cluster}"


@dataclass
class _Watched:
    watch: ClusterWatch
    task: asyncio.Task[None]
    renewed: float  # time.monotonic() of the lease's last renewal
    recorded: WatchState | None = None


@dataclass
class PlacementWatcher:
    """The watches of one replica, driven by the reconciler's loop (``tick`` every poll)."""

    store: ResourceStore
    replica: str
    lease_ttl: float
    wake: Callable[[], None]  # the reconciler: the placements moved
    timeout: float = 10.0
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _snap: Snapshot | None = None
    _queue: asyncio.Queue[str] | None = None  # clusters with a reading to record
    _latest: dict[str, Reading] = field(default_factory=dict)  # each cluster's newest reading
    _recorder: asyncio.Task[None] | None = None
    _settled: float = 0.0

    # ------------------------------------------------------------------ the lease keeper's side

    def held(self) -> list[str]:
        """The leases to renew (called from the keeper thread)."""
        return [lease_name(c) for c in list(self._watched)]

    def renewed(self, kept: set[str], at: float) -> None:
        """On the loop: these leases were renewed at ``at``; the others were not."""
        for cluster, watched in self._watched.items():
            if lease_name(cluster) in kept:
                watched.renewed = at

    # -------------------------------------------------------------------------- each tick

    async def tick(self, snap: Snapshot | None, targets: list[ClusterAccess],
                   live: list[str]) -> None:
        """Start, move or stop watches for the documents ``snap`` (None: they cannot be
        rendered now; the watches are left as they are) and the live replicas."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._recorder = asyncio.create_task(self._record_readings())
        fenced = [c for c, w in self._watched.items()
                  if time.monotonic() - w.renewed >= FENCE * self.lease_ttl]
        for cluster in fenced:
            log.warning("cluster %s: placement lease not renewed; watch stopped", cluster)
            await self._stop(cluster, release=False)
        if snap is not None:
            self._snap = snap
            looks = placement.looks(snap, {t.name: t for t in targets})
            reachable = {t.name for t in targets}
            mine = {c: lk for c, lk in looks.items()
                    if c in reachable and owner(c, live) == self.replica}
            for cluster in [c for c in self._watched if c not in mine]:
                await self._stop(cluster)
            for cluster, (target, look) in sorted(mine.items()):
                await self._keep(cluster, target, look)
        await self._record_states()
        if self._snap is not None and discovered(self._snap) and \
                time.monotonic() - self._settled >= SETTLE_EVERY:
            self._settled = time.monotonic()
            await self._settle(self._snap)

    async def _keep(self, cluster: str, target: ClusterAccess, look: Look) -> None:
        watched = self._watched.get(cluster)
        if watched is not None:
            if watched.watch.target == target and watched.watch.relook(look):
                return
            await self._stop(cluster, release=False)  # other kinds, label key or credential
        taken = await asyncio.to_thread(self.store.acquire_lease, lease_name(cluster),
                                        self.replica, self.lease_ttl)
        if taken is None:
            return  # another replica still holds it: next tick
        watch = ClusterWatch(target, look, self._offer, timeout=self.timeout)
        task = asyncio.create_task(watch.run(), name=f"meshbridge-watch-{cluster}")
        self._watched[cluster] = _Watched(watch, task, time.monotonic())
        log.info("cluster %s: watching placements (lease term %d)", cluster, taken.term)

    async def _stop(self, cluster: str, *, release: bool = True) -> None:
        watched = self._watched.pop(cluster)
        watched.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watched.task
        with contextlib.suppress(MeshbridgeError):
            await asyncio.to_thread(self.store.forget_watches, [cluster], self.replica)
            if release:
                await asyncio.to_thread(self.store.release_leases, self.replica,
                                        [lease_name(cluster)])

    async def stop(self) -> None:
        """Stop every watch and give the leases up (the replica shuts down)."""
        for cluster in list(self._watched):
            await self._stop(cluster)
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder

    # ------------------------------------------------------------------------- recording

    def _offer(self, reading: Reading) -> None:
        """A watch's new reading (on the loop): recorded next, unless a newer one replaces it
        first (only a cluster's newest reading is ever recorded)."""
        assert self._queue is not None
        self._latest[reading.cluster] = reading
        self._queue.put_nowait(reading.cluster)

    async def _record_readings(self) -> None:
        assert self._queue is not None
        while True:
            cluster = await self._queue.get()
            reading = self._latest.pop(cluster, None)
            if reading is None or cluster not in self._watched or self._snap is None:
                continue  # recorded already, or a watch stopped: its lease may be another's
            try:
                decision = await asyncio.to_thread(placement.record, self.store, self._snap,
                                                   [reading], self.replica)
            except MeshbridgeError:
                log.exception("cannot record the placements read from cluster %s", cluster)
                await asyncio.sleep(1.0)
                self._latest.setdefault(cluster, reading)  # unless a newer one came meanwhile
                self._queue.put_nowait(cluster)
                continue
            self._announce(decision, cluster)

    async def _settle(self, snap: Snapshot) -> None:
        """End the grace periods that are over (a decision with no reading)."""
        try:
            rows = await asyncio.to_thread(self.store.placement_rows)
            grace = snap.mesh.spec.discovery.grace_seconds
            now = await asyncio.to_thread(self.store.clock)
            if not any(r.gone is not None and now - r.gone >= grace for r in rows):
                return
            decision = await asyncio.to_thread(placement.record, self.store, snap, [],
                                               self.replica)
        except MeshbridgeError:
            log.exception("cannot end the grace periods that are over")
            return
        self._announce(decision, "")

    def _announce(self, decision: placement.Decision, cluster: str) -> None:
        for change in decision.changes:
            log.info("%s", change)
        if decision.moved:
            self.wake()
        elif cluster:
            log.debug("cluster %s: placements read, nothing moved", cluster)

    async def _record_states(self) -> None:
        for cluster, watched in list(self._watched.items()):
            state = watched.watch.state
            if state == watched.recorded:
                continue
            try:
                await asyncio.to_thread(self.store.record_watch, cluster, self.replica,
                                        state.state, state.error, state.relists)
            except MeshbridgeError:
                continue
            watched.recorded = state
