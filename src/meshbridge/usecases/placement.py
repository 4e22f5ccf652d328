"""Discovered placement: read from the clusters, decided against what was known, kept in the
store, and handed to compile as an input (``compile.Placement``).

What an App with ``discover: {}`` runs in is a decision over three things: what each cluster
says now (``kube.placement.Reading``: the Apps found, or an error), the placements recorded so
far (``store``: rows), and the time (the database's). :func:`decide` is that decision, a pure
function, and its rules are the contract's ("Discovered placement" in docs/intents.md):

1. a cluster that was read: an App found there is placed there (``found``, or ``back`` when it
   returns within its grace period); one not found any more is marked gone;
2. a cluster that could not be read: its rows stand, as they were (an error is never "no
   instances");
3. per App: while it runs somewhere, it is placed exactly there (a cluster it left is dropped at
   once: ``left``); found nowhere, it keeps the clusters it was placed in for the Mesh's
   ``discovery.gracePeriod`` (``gone``), then none (``dropped``);
4. rows of Apps that are no longer discovered, or of clusters they may no longer run in, go
   (``forgotten``).

``meshbridge apply`` reads, decides and records before it renders; a server records what its
watches read (``server.placements``); ``discover`` and dry runs decide without recording;
``render`` uses the recorded placement or a file (:func:`from_file`). Every recorded change is
in the audit log (kind ``Placement``, name ``<app>@<cluster>``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from meshbridge.compile.placement import candidates, coverage, wanted
from meshbridge.compile.snapshot import Snapshot, build
from meshbridge.errors import InvalidInput, Problem
from meshbridge.kube import ClusterAccess, ReconcileOptions
from meshbridge.kube.placement import Look, Reading, read_placements
from meshbridge.loading import Source, load
from meshbridge.model import API_VERSION
from meshbridge.store import AuditEntry, PlacementRow, PlacementStore
from meshbridge.wire.messages import PlacementAnswer, PlacementItem, UncoveredItem, WatchView

__all__ = [
    "AUDIT_KIND",
    "Change",
    "Decision",
    "as_documents",
    "decide",
    "from_file",
    "iso_time",
    "looks",
    "placement_of",
    "preview",
    "read",
    "readings_view",
    "record",
    "view",
]

AppKey = tuple[str, str]
AUDIT_KIND = "Placement"

_WORDS = {
    "found": "found running",
    "back": "found running again, within its grace period",
    "left": "left the cluster (it runs elsewhere): its routes there go",
    "gone": "found in no cluster any more: its placement is kept for the grace period",
    "dropped": "gone for the whole grace period: its routes go",
    "forgotten": "no longer discovered there: forgotten",
}


@dataclass(frozen=True, order=True)
class Change:
    """One change of a placement: what happened to App ``namespace/app`` in ``cluster``."""

    namespace: str
    app: str
    cluster: str
    what: str  # found | back | left | gone | dropped | forgotten
    ready: int = 0

    def __str__(self) -> str:
        count = f" ({self.ready} ready)" if self.what in ("found", "back") else ""
        return (f"App {self.namespace}/{self.app} in cluster {self.cluster}: "
                f"{_WORDS[self.what]}{count}")


@dataclass(frozen=True)
class Decision:
    """The placements after a decision (``rows``), what to write and delete, what changed, and
    whether the set of placements (a render input) moved."""

    rows: tuple[PlacementRow, ...]
    written: tuple[PlacementRow, ...]
    deleted: tuple[tuple[str, str, str], ...]
    changes: tuple[Change, ...]
    moved: bool

    @property
    def placement(self) -> dict[AppKey, frozenset[str]]:
        return placement_of(self.rows)


def placement_of(rows: Iterable[PlacementRow]) -> dict[AppKey, frozenset[str]]:
    """The placement rows say: (namespace, app) -> clusters (grace-kept ones included)."""
    out: dict[AppKey, set[str]] = {}
    for row in rows:
        out.setdefault((row.namespace, row.app), set()).add(row.cluster)
    return {key: frozenset(clusters) for key, clusters in sorted(out.items())}


def decide(
    rows: Iterable[PlacementRow],
    readings: Iterable[Reading],
    may_run: Mapping[AppKey, Sequence[str]],
    now: float,
    grace: float,
) -> Decision:
    """The placements after the clusters said ``readings`` at ``now`` (the rules of the
    module docstring); ``may_run``: every discovered App and the clusters it may run in."""
    before = {row.key: row for row in rows}
    after: dict[tuple[str, str, str], PlacementRow] = {}
    changes: list[Change] = []
    for key, row in before.items():
        if row.cluster in may_run.get((row.namespace, row.app), ()):
            after[key] = row
        else:
            changes.append(Change(row.namespace, row.app, row.cluster, "forgotten"))
    for reading in readings:
        if reading.found is None:
            continue  # rule 2: the rows of a cluster that could not be read stand
        for app, clusters in may_run.items():
            if reading.cluster not in clusters:
                continue
            key = (*app, reading.cluster)
            known = after.get(key)
            if app in reading.found:
                ready = reading.found[app]
                if known is None:
                    after[key] = PlacementRow(*key, ready, now, now)
                    changes.append(Change(*key, "found", ready))
                else:
                    if known.gone is not None:
                        changes.append(Change(*key, "back", ready))
                    after[key] = replace(known, ready=ready, seen=now, gone=None)
            elif known is not None and known.gone is None:
                after[key] = replace(known, ready=0, gone=now)
    for app in may_run:
        mine = {k: r for k, r in after.items() if (k[0], k[1]) == app}
        running = [k for k, r in mine.items() if r.gone is None]
        for key, row in mine.items():
            if row.gone is None:
                continue
            was_running = key in before and before[key].gone is None
            if running:
                del after[key]
                changes.append(Change(*key, "left"))
            elif now - row.gone >= grace:
                del after[key]
                changes.append(Change(*key, "dropped"))
            elif was_running:
                changes.append(Change(*key, "gone"))
    written = tuple(r for k, r in sorted(after.items()) if before.get(k) != r)
    deleted = tuple(sorted(set(before) - set(after)))
    return Decision(
        rows=tuple(r for _, r in sorted(after.items())),
        written=written,
        deleted=deleted,
        changes=tuple(sorted(changes)),
        moved=set(before) != set(after),
    )


# ------------------------------------------------------------------------ reading clusters


def looks(snap: Snapshot, access: Mapping[str, ClusterAccess]) -> dict[str, tuple[ClusterAccess, Look]]:
    """What to look for in each cluster a discovered App may run in, and how to reach it."""
    label_key = snap.mesh.spec.discovery.label_key
    out = {}
    for cluster, apps in wanted(snap).items():
        look = Look(
            services={w.app: w.services for w in apps if w.services},
            clients=tuple(w.app for w in apps if not w.services),
            label_key=label_key,
        )
        out[cluster] = (access.get(cluster) or ClusterAccess(cluster, None), look)
    return out


def read(snap: Snapshot, access: Mapping[str, ClusterAccess], options: ReconcileOptions
         ) -> list[Reading]:
    """Every cluster a discovered App may run in, read once (lists, no watch)."""
    found = looks(snap, access)
    if not found:
        return []
    return asyncio.run(read_placements(found, options))


# ---------------------------------------------------------------------- the store's records


def preview(store: PlacementStore, snap: Snapshot, readings: Iterable[Reading]) -> Decision:
    """What recording ``readings`` would decide, recording nothing (``discover``, dry runs)."""
    return decide(store.placement_rows(), readings, candidates(snap), store.clock(),
                  snap.mesh.spec.discovery.grace_seconds)


def record(
    store: PlacementStore, snap: Snapshot, readings: Iterable[Reading], actor: str
) -> Decision:
    """Decide and keep: the rows written, the placement counter moved when the set of
    placements did, every change audited; one decision at a time across processes. With no
    readings, only time passes: grace periods that are over end."""
    with store.transaction():
        store.lock_placements()
        decision = preview(store, snap, readings)
        if decision.written or decision.deleted:
            store.write_placements(decision.written, decision.deleted, moved=decision.moved)
        if decision.changes:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            store.add_audit([
                AuditEntry(0, at, actor, c.what, AUDIT_KIND, c.namespace, f"{c.app}@{c.cluster}",
                           None, None)
                for c in decision.changes
            ])
    return decision


# ------------------------------------------------------------------- placement as documents


def as_documents(snap: Snapshot, placement: Mapping[AppKey, frozenset[str]]) -> list[dict[str, Any]]:
    """The discovered Apps as documents with explicit ``clusters`` (what ``discover -o yaml``
    writes, for a placement kept in Git; ``render --placement`` reads it back). An App placed
    nowhere has no such document (``clusters`` names at least one)."""
    out = []
    for key, clusters in sorted(placement.items()):
        app = snap.apps.get(key)
        if app is None or app.spec.discover is None or not clusters:
            continue
        spec = app.spec.model_dump(by_alias=True, exclude_none=True,
                                   exclude={"discover", "cluster_selector"})
        meta = app.metadata.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        out.append({"apiVersion": API_VERSION, "kind": "App", "metadata": meta,
                    "spec": {"clusters": sorted(clusters), **spec}})
    return out


def from_file(snap: Snapshot, source: Source) -> dict[AppKey, frozenset[str]]:
    """The placement a file gives (App documents with ``clusters``, as ``discover -o yaml``
    writes them), read by the one strict loader: every App in it must be a discovered App of
    the intents (InvalidInput naming the document otherwise). A discovered App the file does
    not name runs nowhere."""
    given = load([source])
    problems = []
    out: dict[AppKey, frozenset[str]] = {}
    for doc in given.documents():
        obj = doc.obj
        key = (obj.namespace, obj.name)
        app = snap.apps.get(key)
        if obj.kind != "App" or obj.spec.clusters is None:
            problems.append(Problem(doc.source, doc.index, doc.kind, obj.name, "",
                                    "a placement file holds App documents with spec.clusters "
                                    "(meshbridge discover -o yaml)"))
        elif app is None or app.spec.discover is None:
            problems.append(Problem(doc.source, doc.index, doc.kind, obj.name, "metadata.name",
                                    f"the intents have no App {obj.namespace}/{obj.name} with "
                                    "discover: {}"))
        else:
            out[key] = frozenset(obj.spec.clusters)
    if problems:
        raise InvalidInput(problems)
    return out


# -------------------------------------------------------------------------------- the view


def iso_time(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(
        timespec="seconds")


def readings_view(readings: Iterable[Reading], now: float) -> list[WatchView]:
    """How each cluster was read once (``discover``, ``apply``)."""
    return [WatchView(cluster=r.cluster, state="read" if r.found is not None else "failing",
                      error=r.error, since=iso_time(now)) for r in readings]


def view(snap: Snapshot, rows: Sequence[PlacementRow], clusters: Iterable[WatchView],
         now: float) -> PlacementAnswer:
    """What ``discover`` prints and ``GET /api/v1/placements`` answers: the placements, every
    discovered App, how each cluster is read, and what the declared splits do not cover of
    where the Apps are found running."""
    grace = snap.mesh.spec.discovery.grace_seconds
    may_run = candidates(snap)
    mine = [r for r in rows if r.cluster in may_run.get((r.namespace, r.app), ())]
    running = placement_of(r for r in mine if r.gone is None)
    return PlacementAnswer(
        items=[
            PlacementItem(namespace=r.namespace, app=r.app, cluster=r.cluster, ready=r.ready,
                          found=iso_time(r.found), seen=iso_time(r.seen), gone=iso_time(r.gone),
                          kept_until=iso_time(None if r.gone is None else r.gone + grace))
            for r in mine
        ],
        discovered=[f"{ns}/{app}" for ns, app in sorted(may_run)],
        clusters=sorted(clusters, key=lambda c: c.cluster),
        uncovered=[
            UncoveredItem(namespace=u.namespace, app=u.app, cluster=u.cluster, intent=u.intent,
                          message=u.message)
            for u in coverage(build(snap.intents, running))
        ],
        time=iso_time(now),
    )
