"""The root of trust is never replaced by accident: apply checks every cluster before writing.

A state store that lost its PKI (a deleted or emptied file, a new server database) mints a new
root on its next render. Pushed as ``cacerts``, it would make every cluster distrust every other
until istiod and every workload restarted. So before anything is written, every cluster's live
``cacerts`` is read (``meshbridge.kube.read_cacerts``) and compared with the one apply would
write (:func:`meshbridge.pki.bundle.keeps_trust`); a cluster without one yet is compared with
the others'. When a cluster would get a root not trusted there, nothing is written anywhere: no object to any cluster, no status, and (through
:func:`prepare`) none of what the render put in the store, such as a freshly minted root, so
``pki import`` can bring the old one back. ``apply --replace-root`` is the way through on purpose.

A cluster whose ``cacerts`` cannot be read is not written this run either (it is reported
Unreachable or Failed like a cluster apply could not reach); the others go ahead.

After an apply, :func:`record` keeps per cluster what its ``cacerts`` now holds
(:mod:`meshbridge.usecases.seen_cacerts`) and which roots its istiod publishes
(:mod:`meshbridge.usecases.istiod_roots`): root rotation phases wait for both, and apply says
when an istiod signs with a root outside the mesh. The server's background
reconciler runs the same :func:`check` and reports a refusal as every cluster's status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshbridge import plural
from meshbridge.errors import InvalidInput, Problem, RootReplaced, StateError
from meshbridge.kube import ClusterAccess, ClusterReport, MeshRef, ReconcileOptions, read_cacerts
from meshbridge.kube.fleet import State
from meshbridge.model import Intents
from meshbridge.pki.bundle import PUBLIC_FILES, CacertsFacts, keeps_trust
from meshbridge.store import Store
from meshbridge.usecases.apply import Prepared
from meshbridge.usecases.apply import targets as apply_targets
from meshbridge.usecases.istiod_roots import Finding, findings, published_roots, record_istiod
from meshbridge.usecases.seen_cacerts import record_seen
from meshbridge.usecases.statekey import pair_key_file

__all__ = [
    "Checked",
    "Replacement",
    "check",
    "describe",
    "desired_facts",
    "identity_to_take",
    "merged",
    "observe",
    "prepare",
    "record",
    "refused",
]

CACERTS_REF = ("Secret", "istio-system", "cacerts")
HELD_ACTIONS = frozenset({"create", "update", "unchanged"})  # the cluster holds what was sent

CLI_ADVICE = """\
Workloads there hold certificates under the live root: with another root, the clusters \
distrust each other until every cluster has it and istiod and every workload have restarted.
- If this state store lost its PKI (deleted, emptied, a new database), bring the live root \
back: meshbridge pki import --cert ROOT.pem --key ROOT-KEY.pem (ROOT.pem is root-cert.pem of \
the live cacerts; add --force if the store has a root of its own; see "Recovering a lost \
store" in docs/pki.md).
- To move the mesh to a new root without an outage: meshbridge pki rotate-root.
- To replace the root anyway: meshbridge apply --replace-root."""


@dataclass(frozen=True)
class Replacement:
    """A cluster that would get a ``cacerts`` of a root not trusted live: its own live
    ``cacerts`` (``where`` is the cluster itself) or, for a cluster with none yet, another
    cluster's of the mesh (``where``)."""

    cluster: str
    live: CacertsFacts
    new: CacertsFacts
    where: str


@dataclass(frozen=True)
class Checked:
    """What the check found: which clusters may be written, and why others may not."""

    order: tuple[str, ...]  # every chosen cluster, in target order
    targets: list[ClusterAccess]  # clusters to reconcile: their cacerts was read, or they get none
    unread: list[ClusterReport]  # clusters whose cacerts could not be read: not written
    live: Mapping[str, CacertsFacts | None]  # None: the cluster has no cacerts
    desired: Mapping[str, CacertsFacts]
    replacements: tuple[Replacement, ...]
    # (mesh name, mesh-id) meshbridge's labels give each live cacerts, where it has them
    owners: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    took: str | None = None  # the mesh identity this store took over in this apply
    # the roots each read cluster's istiod publishes (istio-ca-root-cert; empty: none read)
    published: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------- checking


def desired_facts(objects: Mapping[str, list[dict[str, Any]]]) -> dict[str, CacertsFacts]:
    """The facts of the ``cacerts`` each cluster's objects carry (clusters without one left out)."""
    out = {}
    for cluster, objs in objects.items():
        for obj in objs:
            meta = obj.get("metadata") or {}
            if (obj.get("kind"), meta.get("namespace"), meta.get("name")) != CACERTS_REF:
                continue
            data = obj.get("data") or {}
            files = {}
            for name in PUBLIC_FILES:
                try:
                    files[name] = base64.b64decode(data.get(name, "")).decode("ascii")
                except (binascii.Error, ValueError):
                    files[name] = ""
            out[cluster] = CacertsFacts.of(files)
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def check(
    targets: list[ClusterAccess],
    objects: Mapping[str, list[dict[str, Any]]],
    options: ReconcileOptions,
    only: Collection[str] | None = None,
) -> Checked:
    """Read the live ``cacerts`` of every target; compare what the clusters ``only`` (default:
    every target) are to get with it; write nothing.

    A cluster that has a ``cacerts`` is compared with its own; a cluster with none yet with the
    other clusters' (a cluster added to a mesh whose store lost its root must not start a root of
    its own either). Clusters outside ``only`` are read for that, never reported.
    """
    chosen = [t for t in targets if only is None or t.name in only]
    desired = desired_facts(objects)
    reading = [t for t in targets if t.name in desired]
    live: dict[str, CacertsFacts | None] = {}
    unread: list[ClusterReport] = []
    names = {t.name for t in chosen}
    owners: dict[str, tuple[str, str]] = {}
    published: dict[str, tuple[str, ...]] = {}
    for found in await read_cacerts(reading, options) if reading else []:
        if found.owner is not None:
            owners[found.cluster] = found.owner
        if found.state in ("found", "absent"):
            published[found.cluster] = published_roots(found.published)
        if found.state == "absent":
            live[found.cluster] = None
        elif found.state == "found":
            try:
                live[found.cluster] = CacertsFacts.of(found.files)
            except ValueError:
                live[found.cluster] = CacertsFacts(())  # unreadable: trusts nothing we know
        elif found.state != "unconfigured" and found.cluster in names:
            # (unconfigured: no client, so the reconcile cannot write there either)
            state: State = "Unreachable" if found.state == "unreachable" else "Failed"
            error = f"cannot read istio-system/cacerts (not written): {found.error}"
            unread.append(
                ClusterReport(
                    found.cluster, state, error=error, attempts=found.attempts, finished_at=_now()
                )
            )
    skipped = {r.cluster for r in unread}
    return Checked(
        order=tuple(t.name for t in chosen),
        targets=[t for t in chosen if t.name not in skipped],
        unread=unread,
        live=live,
        desired=desired,
        replacements=_replacements(sorted(names), desired, live),
        owners=owners,
        published=published,
    )


def _replacements(
    clusters: list[str],
    desired: Mapping[str, CacertsFacts],
    live: Mapping[str, CacertsFacts | None],
) -> tuple[Replacement, ...]:
    out = []
    for cluster in clusters:
        if cluster not in desired or cluster not in live:
            continue  # no cacerts to write, or the cluster could not be read
        own = live[cluster]
        against = [(cluster, own)] if own is not None else sorted(live.items())
        for where, facts in against:
            if facts is not None and not keeps_trust(desired[cluster], facts):
                out.append(Replacement(cluster, facts, desired[cluster], where))
                break
    return tuple(out)


def _roots(facts: CacertsFacts) -> str:
    if not facts.roots:
        return "root (none readable)"
    suffix = "s" if len(facts.roots) > 1 else ""
    return f"root{suffix} " + ", ".join(f"sha256:{r}" for r in facts.roots)


def describe(checked: Checked) -> str:
    """Which clusters would get another root, with both sides' fingerprints (no advice)."""
    lines = [
        f"  {r.cluster}: "
        + (
            f"live {_roots(r.live)}"
            if r.where == r.cluster
            else f"no cacerts yet, {r.where}'s live {_roots(r.live)}"
        )
        + f"; new cacerts: {_roots(r.new)}"
        for r in checked.replacements
    ]
    count = len(checked.replacements)
    head = (
        f"apply would replace the root of trust of {count} of "
        f"{plural.count(len(checked.order), 'cluster')}"
    )
    return "\n".join([head, *lines])


def identity_to_take(checked: Checked, mesh: MeshRef, explicit: str | None) -> str | None:
    """The mesh identity this store must take over before it writes, if any.

    A store that lost its state (and had its root brought back with ``pki import``) carries a
    new identity, so every object of its mesh in the clusters would look like another mesh's.
    Where the clusters' live ``cacerts`` is labelled with this mesh's name and one other
    identity, under a root this store holds (no replacement: trust is proven, as only the
    mesh's own store can hold its root), the store takes that identity. ``explicit``
    (``--adopt-mesh-id``) names it instead, for a store that cannot prove it (a root replaced
    with ``--replace-root``).
    """
    if explicit is not None:
        if not re.fullmatch(r"[0-9a-f][0-9a-f-]{7,63}", explicit):
            raise InvalidInput([Problem("--adopt-mesh-id", 0, "", "", "",
                                        f"{explicit!r} is not a mesh identity (the "
                                        f"meshbridge.dev/mesh-id label of the mesh's objects)")])
        return None if explicit == mesh.uid else explicit
    if checked.replacements:
        return None
    others = sorted({uid for name, uid in checked.owners.values()
                     if name == mesh.name and uid != mesh.uid})
    if len(others) > 1:
        holders = ", ".join(f"{c}: {u}" for c, (n, u) in sorted(checked.owners.items())
                            if n == mesh.name)
        raise StateError(
            f"the clusters' cacerts carry {len(others)} identities of mesh {mesh.name!r} "
            f"({holders}): name the one this store is with --adopt-mesh-id"
        )
    return others[0] if others else None


def refused(checked: Checked, message: str) -> list[ClusterReport]:
    """Every chosen cluster reported Failed with ``message``: nothing was written to any."""
    now = _now()
    return [ClusterReport(c, "Failed", error=message, finished_at=now) for c in checked.order]


def merged(checked: Checked, reports: list[ClusterReport]) -> list[ClusterReport]:
    """The reconcile's reports with the unread clusters' added, in target order."""
    by_name = {r.cluster: r for r in [*reports, *checked.unread]}
    return [by_name[c] for c in checked.order if c in by_name]


# ---------------------------------------------------------------------------- apply (the CLI)


def prepare(
    store: Store,
    state_path: str | None,
    make: Callable[[], Prepared],
    options: ReconcileOptions,
    only: list[str] | None = None,
    *,
    replace_root: bool,
    adopt_mesh_id: str | None = None,
) -> tuple[Prepared, Checked]:
    """``make()`` (apply's prepare, for every cluster), then the check of the clusters ``only``
    (``--cluster``; default every cluster) against every cluster's live ``cacerts``.

    A refusal raises RootReplaced before anything is written; for an apply (not a dry run) the
    render's store writes (VIPs, certificates minted on the way) are undone with it, since
    ``make()`` runs inside the transaction the check ends. The returned Prepared targets the
    clusters ``only`` whose ``cacerts`` could be read.
    """

    def checked(prepared: Prepared) -> Checked:
        _known(prepared.targets, only)
        found = asyncio.run(check(prepared.targets, prepared.objects, options, only))
        if found.replacements and not replace_root:
            raise RootReplaced(
                f"{describe(found)}\nnothing was written to any cluster or to the state store. "
                f"{CLI_ADVICE}",
                (r.cluster for r in found.replacements),
            )
        take = identity_to_take(found, prepared.mesh, adopt_mesh_id)
        if take is not None and not options.dry_run:
            store.take_mesh_id(take)  # in the transaction: undone if anything below fails
        return dataclasses.replace(found, took=take)

    pair_key_file(state_path, store)  # a key file made by a rolled-back render looks orphaned
    if options.dry_run:  # make() keeps nothing itself
        prepared = make()
        found = checked(prepared)
    else:
        with store.transaction():
            prepared = make()
            found = checked(prepared)
    mesh = prepared.mesh
    if found.took is not None:  # what it wrote under its own identity stays its own
        mesh = dataclasses.replace(mesh, uid=found.took,
                                   previous_ids=mesh.previous_ids | {mesh.uid})
    return dataclasses.replace(prepared, targets=found.targets, mesh=mesh), found


def _known(targets: list[ClusterAccess], only: list[str] | None) -> None:
    """InvalidInput for names in ``only`` (``--cluster``) that name no Cluster."""
    known = {t.name for t in targets}
    unknown = [c for c in only or [] if c not in known]
    if unknown:
        raise InvalidInput(
            Problem("--cluster", 0, "", "", "", f"no Cluster named {c!r}") for c in unknown
        )


def record(
    store: Store,
    checked: Checked,
    reports: list[ClusterReport],
    restarts_for: Callable[[str, str], list[str]] | None = None,
) -> list[Finding]:
    """Keep what each cluster's ``cacerts`` holds after an apply (see ``seen_cacerts``) and the
    roots its istiod published when apply read it (``istiod_roots``); how each of those istiod
    stands. ``restarts_for(cluster, mesh root)``: the restarts of a cluster whose istiod signs
    with a root outside the mesh, kept with it."""
    now = _now()
    _record_held(store, checked, reports, now)
    clusters = [r.cluster for r in reports if r.cluster in checked.published]
    mesh_roots = sorted({r for facts in checked.desired.values() for r in facts.roots})
    with store.transaction():
        for cluster in clusters:
            record_istiod(store, cluster, checked.published[cluster], now)
        found = findings(store, clusters, mesh_roots, datetime.fromisoformat(now))
        for i, f in enumerate(found):
            if f.state == "outside" and restarts_for is not None:
                plan = restarts_for(f.cluster, f.wanted[0])
                record_istiod(store, f.cluster, f.published, now, plan)
                found[i] = dataclasses.replace(f, restarts=tuple(plan))
    return found


def observe(store: Store, intents: Intents, options: ReconcileOptions) -> list[str]:
    """Read what every Cluster's istiod publishes now, and keep it (``istiod_roots``): what a
    root rotation waits for, seen without an apply. The clusters that could not be read, with
    why."""
    targets = [t for t in apply_targets(intents) if t.kubeconfig is not None]
    now = _now()
    unread = []
    found = asyncio.run(read_cacerts(targets, options)) if targets else []
    with store.transaction():
        for live in found:
            if live.state in ("found", "absent"):
                record_istiod(store, live.cluster, published_roots(live.published), now)
            else:
                unread.append(f"{live.cluster}: {live.error or live.state}")
    return unread


def _record_held(store: Store, checked: Checked, reports: list[ClusterReport], now: str) -> None:
    with store.transaction():
        for report in reports:
            cluster = report.cluster
            if cluster not in checked.desired or cluster not in checked.live:
                continue  # no cacerts wanted there, or not read: nothing learnt
            sent = next(
                (c for c in report.outcome.changes if (c.kind, c.namespace, c.name) == CACERTS_REF),
                None,
            )
            if sent is not None and sent.action in HELD_ACTIONS:
                record_seen(store, cluster, checked.desired[cluster], "applied", now)
            else:
                facts = checked.live[cluster] or CacertsFacts(())
                record_seen(store, cluster, facts, "live", now)
