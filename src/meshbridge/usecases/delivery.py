"""Reading, recording and waiting for propagation: what ``apply --wait``, ``status
--propagation`` and the server's reconciler run (the judgement is ``usecases.propagation``).

Per cluster the store keeps one ``propagation`` record: the change it is about (the
resourceVersions the last apply left, ``propagation.change_id``), when it was applied, the
witness of the write if meshbridge watched it, the proxies connected when it was made (those
missing later are "disconnected since the change"), when it was first seen delivered and, if
watched, how long that took from the end of the write; and the last verdict. A new change
starts a new record; an apply that changed nothing keeps the one there.

How clusters are reached: the CLI reads the kubeconfig file the last apply recorded for the
cluster (path and context, ``usecases.apply.record_status``); the server, the credential its
Cluster names.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meshbridge.kube import Change, ClusterAccess
from meshbridge.kube.istiod import ClusterReading, read_clusters
from meshbridge.store import Store
from meshbridge.usecases.apply import PROPAGATION_KIND, STATUS_KIND, cluster_statuses
from meshbridge.usecases.propagation import Witness, change_id, judge, witness
from meshbridge.wire.messages import ClusterPropagation

__all__ = [
    "NO_KUBECONFIG",
    "PROPAGATION_KIND",
    "Watched",
    "baseline",
    "check",
    "note",
    "recorded",
    "recorded_targets",
    "wait",
]

NO_KUBECONFIG = ("no kubeconfig recorded for it by the last apply (apply it again with this "
                 "meshbridge)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Record:
    """One cluster's propagation record (see the module's docstring)."""

    change: str
    since: str | None
    witness: Witness | None = None
    proxies: frozenset[str] | None = None  # None: not known yet (the first reading sets them)
    delivered_at: str | None = None
    seconds: float | None = None
    last: ClusterPropagation | None = None

    def to_bytes(self) -> bytes:
        return json.dumps({
            "change": self.change, "since": self.since,
            "witness": self.witness.to_json() if self.witness else None,
            "proxies": None if self.proxies is None else sorted(self.proxies),
            "deliveredAt": self.delivered_at, "seconds": self.seconds,
            "last": self.last.to_json() if self.last else None,
        }, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> _Record:
        raw = json.loads(data)
        return cls(
            raw["change"], raw.get("since"),
            Witness.from_json(raw["witness"]) if raw.get("witness") else None,
            None if raw.get("proxies") is None else frozenset(raw["proxies"]),
            raw.get("deliveredAt"), raw.get("seconds"),
            ClusterPropagation.model_validate(raw["last"]) if raw.get("last") else None,
        )


def _current(store: Store, status: Mapping[str, Any], seen: Witness | None = None) -> _Record:
    """The cluster's record for the change its last apply left: the stored one, or a new one
    (with the witness of the write, when there is one)."""
    change = change_id(status)
    data = store.get_blob(PROPAGATION_KIND, status["cluster"])
    if data is not None and seen is None:
        kept = _Record.from_bytes(data)
        if kept.change == change:
            return kept
    return _Record(change, status.get("time"), seen, seen.proxies if seen else None)


def _judged(record: _Record, status: Mapping[str, Any], reading: ClusterReading,
            delivered_after: float | None = None) -> ClusterPropagation:
    """The verdict on ``reading``, kept in ``record`` (and when it was first delivered)."""
    if record.proxies is None and reading.state == "read":
        record.proxies = frozenset(p.proxy for r in reading.replicas for p in r.proxies)
    view = judge(status, reading, expected=record.proxies or frozenset(), seen=record.witness)
    if view.state == "delivered" and record.delivered_at is None:
        record.delivered_at = _now()
        if delivered_after is not None:
            record.seconds = round(delivered_after, 3)
    view = view.model_copy(update={"delivered_at": record.delivered_at,
                                   "seconds": record.seconds, "checked": _now()})
    record.last = view
    return view


def recorded_targets(statuses: list[dict[str, Any]]) -> list[ClusterAccess]:
    """How the CLI reaches each cluster again: the kubeconfig its last apply recorded."""
    out = []
    for status in statuses:
        kubeconfig = status.get("kubeconfig") or {}
        if kubeconfig.get("path"):
            out.append(ClusterAccess(status["cluster"], kubeconfig["path"],
                                     kubeconfig.get("context")))
        else:
            out.append(ClusterAccess(status["cluster"], None, unusable=NO_KUBECONFIG))
    return out


def check(
    store: Store,
    targets: list[ClusterAccess],
    *,
    timeout: float = 10.0,
    parallel: int = 16,
) -> list[ClusterPropagation]:
    """Every target's propagation now (its istiods read live), recorded; in target order.
    Targets with no apply recorded are left out."""
    statuses = {s["cluster"]: s for s in cluster_statuses(store)}
    chosen = [t for t in targets if t.name in statuses]
    readings = asyncio.run(read_clusters(chosen, timeout, parallel))
    with store.transaction():
        return [note(store, statuses[r.cluster], r) for r in readings]


def note(store: Store, status: Mapping[str, Any], reading: ClusterReading) -> ClusterPropagation:
    """The verdict on one cluster's reading (``status``: its last apply's record), kept in its
    propagation record."""
    record = _current(store, status)
    view = _judged(record, status, reading)
    store.put_blob(PROPAGATION_KIND, reading.cluster, record.to_bytes())
    return view


def recorded(store: Store, statuses: list[dict[str, Any]]) -> dict[str, ClusterPropagation]:
    """The last verdict recorded per cluster about the change its last apply (``statuses``)
    left; none for a cluster whose change has not been looked at yet. No cluster is read."""
    changes = {s["cluster"]: change_id(s) for s in statuses}
    out = {}
    for cluster, data in store.list_blobs(PROPAGATION_KIND).items():
        record = _Record.from_bytes(data)
        if record.last is not None and changes.get(cluster) == record.change:
            out[cluster] = record.last
    return out


async def baseline(
    targets: list[ClusterAccess], timeout: float, parallel: int = 16
) -> dict[str, ClusterReading]:
    """Every target's istiods just before a write: what the write's propagation is measured
    against (:func:`propagation.witness`)."""
    return {r.cluster: r for r in await read_clusters(targets, timeout, parallel)}


@dataclass(frozen=True)
class Watched:
    """A cluster an apply changed, to wait for: how to reach it, what its istiods looked like
    before the write (None: they could not be read then), the write's changes, and when the
    write ended (``time.monotonic()``)."""

    target: ClusterAccess
    before: ClusterReading | None
    changes: Sequence[Change]
    written: float = field(default_factory=time.monotonic)

    @property
    def witness(self) -> Witness | None:
        if self.before is None or self.before.state != "read":
            return None
        return witness(self.before, self.changes)


Progress = Callable[[list[ClusterPropagation]], None]


async def wait(
    store: Store,
    watched: list[Watched],
    *,
    timeout: float,
    request_timeout: float = 10.0,
    interval: float = 0.25,
    parallel: int = 16,
    progress: Progress | None = None,
) -> list[ClusterPropagation]:
    """Read the watched clusters every ``interval`` seconds until each is delivered, or NACKed
    (a rejection does not mend itself), or ``timeout`` seconds have passed; the last verdicts,
    recorded, in ``watched`` order. Store access runs in threads (the caller may be the
    server's event loop)."""
    statuses = await asyncio.to_thread(
        lambda: {w.target.name: _status(store, w.target.name) for w in watched})
    records = {w.target.name: _current(store, statuses[w.target.name], w.witness)
               for w in watched}
    views: dict[str, ClusterPropagation] = {}
    waiting = {w.target.name: w for w in watched}
    deadline = time.monotonic() + timeout
    while waiting:
        readings = await read_clusters([w.target for w in waiting.values()], request_timeout,
                                       parallel)
        for reading in readings:
            name = reading.cluster
            after = time.monotonic() - waiting[name].written
            views[name] = _judged(records[name], statuses[name], reading, after)
            if views[name].state in ("delivered", "nack"):
                del waiting[name]
        if progress is not None:
            progress(list(views.values()))
        if waiting and time.monotonic() + interval > deadline:
            break
        if waiting:
            await asyncio.sleep(interval)

    def keep() -> None:
        with store.transaction():
            for name, record in records.items():
                store.put_blob(PROPAGATION_KIND, name, record.to_bytes())

    await asyncio.to_thread(keep)
    return [views[w.target.name] for w in watched]


def _status(store: Store, cluster: str) -> dict[str, Any]:
    data = store.get_blob(STATUS_KIND, cluster)
    if data is None:
        return {"cluster": cluster, "state": "Pending", "objects": []}
    found: dict[str, Any] = json.loads(data)
    return found
