"""The server's watch on propagation: after each reconcile run, the replica that wrote to a
cluster (it held the cluster's lease) reads the cluster's istiods until what it wrote is
delivered to every proxy, a proxy NACKs it, or ``timeout`` seconds pass, and records the
verdict (``usecases.delivery``), which ``/api/v1/status`` and ``/metrics`` read from the store.

Before a run, every cluster of the batch has its istiods read (the witness a write is measured
against, ``usecases.propagation``); a watch still going for a cluster is cancelled then, as the
new run supersedes it. A run that changed nothing in a cluster is checked once (a proxy may
have disconnected, or a user's object made one NACK). Time from the accepted revision to
delivered, for the histogram: from when this replica first saw the revision (within a second of
the write: the reconciler looks at the store every second) to the watch's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meshbridge.kube import ClusterAccess, ClusterReport
from meshbridge.kube.istiod import ClusterReading
from meshbridge.store import Store
from meshbridge.usecases import delivery

log = logging.getLogger("meshbridge.propagation")

WRITES = ("create", "update", "delete")
BASELINE_TIMEOUT = 5.0


@dataclass
class Watches:
    """The propagation watches of one reconciler, on its event loop."""

    store: Store
    timeout: float = 120.0  # seconds a watch waits for delivery after a write
    request_timeout: float = 10.0
    on_delivered: Callable[[str, float], None] | None = None  # (cluster, seconds from revision)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def before(self, targets: list[ClusterAccess]) -> dict[str, ClusterReading]:
        """Cancel the watches of these clusters, then read their istiods (before a write)."""
        for target in targets:
            task = self._tasks.pop(target.name, None)
            if task is not None:
                task.cancel()
        return await delivery.baseline(targets, min(self.request_timeout, BASELINE_TIMEOUT))

    def after(
        self,
        targets: list[ClusterAccess],
        reports: list[ClusterReport],
        before: dict[str, ClusterReading],
        revision_seen: float,
    ) -> None:
        """Start a watch per reconciled cluster: until delivered when the run wrote to it,
        one check when it did not."""
        written = time.monotonic()
        by_name = {r.cluster: r for r in reports}
        for target in targets:
            report = by_name.get(target.name)
            if report is None or report.state != "Applied":
                continue
            changes = report.outcome.changes
            wrote = any(c.action in WRITES for c in changes)
            watched = delivery.Watched(target, before.get(target.name) if wrote else None,
                                       changes if wrote else (), written)
            self._tasks[target.name] = asyncio.create_task(
                self._watch(watched, self.timeout if wrote else 0.0, written - revision_seen
                            if wrote else None),
                name=f"propagation-{target.name}",
            )

    async def _watch(self, watched: delivery.Watched, timeout: float, lead: float | None) -> None:
        try:
            (view,) = await delivery.wait(self.store, [watched], timeout=timeout,
                                          request_timeout=self.request_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:  # a watch must not take the reconciler down; the next run retries
            log.exception("propagation watch of cluster %s failed", watched.target.name)
            return
        finally:
            if self._tasks.get(watched.target.name) is asyncio.current_task():
                del self._tasks[watched.target.name]
        if view.state != "delivered":
            if lead is not None:
                log.warning("cluster %s: not delivered (%s): %s", view.cluster, view.state,
                            view.reason)
            return
        if lead is not None and view.seconds is not None and self.on_delivered is not None:
            self.on_delivered(view.cluster, lead + view.seconds)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
