"""discover and rbac: where the discovered Apps run, and what meshbridge may ask of a cluster.

``discover -f DIR`` reads every Cluster a discovered App may run in (as ``apply`` does before
it renders) and prints what it found, decided against the placements the state store recorded
(the grace period, unreadable clusters), recording nothing; ``--server`` asks a server, which
watches its clusters. ``rbac`` prints the ClusterRoles, Role and bindings of ``kube.access``.
The placement notes of ``apply``, ``render`` and ``status`` are printed here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshbridge import plural
from meshbridge.cli import remote as remote_cmd
from meshbridge.cli.common import (
    StateOption,
    err_console,
    errors_mapped,
    out_console,
    short_time,
    state_path,
)
from meshbridge.usecases.sources import read_sources

if TYPE_CHECKING:
    from pathlib import Path

    from meshbridge.compile import Placement
    from meshbridge.compile.placement import Uncovered
    from meshbridge.compile.snapshot import Snapshot
    from meshbridge.store import PlacementStore
    from meshbridge.usecases.apply import Placed
    from meshbridge.wire.messages import PlacementAnswer, UncoveredItem

OutputOption = Annotated[
    str,
    typer.Option("-o", "--output", metavar="table|yaml|json",
                 help="table; yaml: App documents with explicit clusters (for Git, and for "
                 "render --placement); json: a list of {app, namespace, cluster, ready}."),
]


def discover(
    files: Annotated[
        list[str] | None,
        typer.Option("-f", "--filename", metavar="FILE|DIR|-", show_default=False,
                     help="Intent documents (as for apply). Required unless --server is given."),
    ] = None,
    output: OutputOption = "table",
    state: StateOption = None,
    parallel: Annotated[int, typer.Option("--parallel", metavar="N", min=1, max=64,
                                          help="Clusters read at the same time.")] = 4,
    retries: Annotated[int, typer.Option("--retries", metavar="N", min=1, max=20,
                                         help="Attempts per unreachable cluster.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", min=0.5,
                                           help="Seconds to wait for each API request.")] = 10.0,
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
) -> None:
    """Show where the Apps with discover: {} run, read from the clusters.

    Reads every Cluster such an App may run in (Services with ready endpoints; for a client-only
    App, labelled workloads and running pods) and decides as apply would against the
    placements the state store recorded (an App gone from every cluster is kept for the grace
    period; a cluster that cannot be read keeps its last known placements), recording nothing.
    With --server, the server's placements, kept current by its watches. Exit 1 when a
    cluster could not be read, 2 on invalid input.
    """
    if output not in ("table", "yaml", "json"):
        err_console.print("error: -o takes table, yaml or json", style="red", markup=False)
        raise typer.Exit(2)
    if server:
        if files:
            err_console.print("error: discover --server shows the server's placements, of the "
                              "documents it stores: leave out -f", style="red", markup=False)
            raise typer.Exit(2)
        remote = remote_cmd.Remote(server, token, server_ca)
        with errors_mapped(), remote.client() as client:
            answer = client.placements()
        _show(answer, output, None)
        return
    if not files:
        err_console.print("error: give -f (the intents), or --server URL", style="red",
                          markup=False)
        raise typer.Exit(2)
    from meshbridge.kube import ReconcileOptions

    options = ReconcileOptions(dry_run=True, parallel=parallel, retries=retries, timeout=timeout)
    with errors_mapped():
        answer, documents = _discover_local(files, state, options)
    _show(answer, output, documents)


def _discover_local(
    files: list[str], state: str | None, options: Any
) -> tuple[PlacementAnswer, list[dict[str, Any]]]:
    from meshbridge import compile as mbcompile
    from meshbridge.compile.placement import candidates
    from meshbridge.store import open_store, store_exists
    from meshbridge.usecases import placement
    from meshbridge.usecases.apply import file_target
    from meshbridge.usecases.render import parse

    intents = parse(read_sources(files))
    snap = mbcompile.check(intents, before_apply=True)
    access = {d.obj.name: file_target(d.obj) for d in intents.clusters}
    readings = placement.read(snap, access, options)
    location = state_path(state)
    if store_exists(location):  # decided against what was recorded; nothing written
        store = open_store(location)
        try:
            decision = placement.preview(store, snap, readings)
            now = store.clock()
        finally:
            store.close()
    else:
        now = time.time()
        grace = snap.mesh.spec.discovery.grace_seconds
        decision = placement.decide((), readings, candidates(snap), now, grace)
    answer = placement.view(snap, decision.rows, placement.readings_view(readings, now), now)
    return answer, placement.as_documents(snap, decision.placement)


def _show(answer: PlacementAnswer, output: str, documents: list[dict[str, Any]] | None) -> None:
    """Print the placements as asked; the clusters that could not be read and what the
    declared splits do not cover go to stderr (exit 1 when a cluster could not be read)."""
    if output == "json":
        rows = [{"app": i.app, "namespace": i.namespace, "cluster": i.cluster, "ready": i.ready}
                for i in answer.items]
        out_console.print(json.dumps(rows, indent=2), markup=False, highlight=False)
    elif output == "yaml":
        _print_documents(answer if documents is None else documents)
    else:
        _table(answer)
    failing = [c for c in answer.clusters if c.state == "failing"]
    for c in failing:
        err_console.print(f"cluster {c.cluster} could not be read ({c.error}): its last known "
                          "placements stand", style="yellow", markup=False)
    print_uncovered(answer.uncovered)
    if failing:
        raise typer.Exit(1)


def _print_documents(found: PlacementAnswer | list[dict[str, Any]]) -> None:
    from meshbridge.output.emitter import dump_all

    if not isinstance(found, list):  # a server's answer: the documents from its items
        clusters: dict[tuple[str, str], list[str]] = {}
        for i in found.items:
            clusters.setdefault((i.namespace, i.app), []).append(i.cluster)
        found = [{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "App",
                  "metadata": {"name": app, "namespace": ns}, "spec": {"clusters": sorted(cs)}}
                 for (ns, app), cs in sorted(clusters.items())]
    if found:
        out_console.print(dump_all(found).decode().rstrip("\n"), markup=False, highlight=False)
    else:
        err_console.print("no discovered App runs anywhere: no document", markup=False)


def _table(answer: PlacementAnswer) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("APP", "CLUSTER", "READY", "LAST SEEN (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("NOTE", overflow="fold")
    placed = set()
    for i in answer.items:
        placed.add(f"{i.namespace}/{i.app}")
        note = (f"gone since {short_time(i.gone)}, kept until {short_time(i.kept_until or '')}"
                if i.gone else "running")
        table.add_row(f"{i.app}.{i.namespace}", i.cluster, str(i.ready),
                      short_time(i.gone or i.seen or ""), note)
    for name in answer.discovered:
        if name not in placed:
            ns, app = name.split("/")
            table.add_row(f"{app}.{ns}", "-", "0", "", "found in no cluster")
    if answer.discovered:
        out_console.print(table)
    else:
        err_console.print("no App has discover: {}", markup=False)


def status_view(answer: PlacementAnswer) -> None:
    """``status --server``: the discovered placements and how each cluster is watched."""
    if not answer.discovered:
        return
    _table(answer)
    for c in answer.clusters:
        note = f": {c.error}" if c.error else ""
        err_console.print(f"cluster {c.cluster}: {c.state} since {short_time(c.since or '')} "
                          f"({c.replica}; {plural.count(c.relists, 'new list')} after 410 Gone)"
                          f"{note}", style="yellow" if c.error else None, markup=False)
    print_uncovered(answer.uncovered)


def print_uncovered(found: Iterable[Uncovered | UncoveredItem]) -> None:
    """What the declared splits do not cover (a note each, never an error)."""
    for u in found:
        err_console.print(
            f"note: App {u.namespace}/{u.app} in cluster {u.cluster!r} (InboundIntent "
            f"{u.intent}): {u.message}", style="yellow", markup=False)


def report_placed(placed: Placed | None, *, dry_run: bool) -> None:
    """``apply``'s notes: what changed in the placements, and the clusters not read."""
    if placed is None:
        return
    for r in placed.readings:
        if r.found is None:
            err_console.print(f"placement: cluster {r.cluster} could not be read ({r.error}): "
                              "its last known placements stand", style="yellow", markup=False)
    verb = "would be" if dry_run else ""
    for change in placed.decision.changes:
        prefix = f"placement ({verb} recorded): " if verb else "placement: "
        err_console.print(f"{prefix}{change}", markup=False)


def render_placement(
    checked: Snapshot, store: PlacementStore, given: Path | None
) -> Placement | None:
    """Where ``render`` places the discovered Apps: the file given, else the placement the
    state store recorded; said on stderr. None when no App is discovered."""
    from meshbridge.compile.placement import discovered
    from meshbridge.usecases import placement

    apps = discovered(checked)
    if not apps:
        return None
    count = plural.count(len(apps), "discovered App")
    if given is not None:
        found = placement.from_file(checked, read_sources([str(given)])[0])
        err_console.print(f"placement of {count}: from {given}", markup=False)
        return found
    rows = store.placement_rows()
    found = placement.placement_of(rows)
    if rows:
        err_console.print(f"placement of {count}: as last recorded in the state store (by "
                          "apply, or a server)", markup=False)
    else:
        err_console.print(f"placement of {count}: none recorded in the state store yet, so "
                          "they run nowhere in this render (run meshbridge apply, or give "
                          "--placement FILE from meshbridge discover -o yaml)",
                          style="yellow", markup=False)
    return found


def status_section(location: str) -> None:
    """``status``: the placements the state store recorded (nothing when none are)."""
    from meshbridge.store import open_store
    from meshbridge.usecases.placement import placement_of

    store = open_store(location)
    try:
        rows = store.placement_rows()
    finally:
        store.close()
    if not rows:
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title="discovered placements", title_justify="left")
    for col in ("APP", "CLUSTER", "READY", "SINCE (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("NOTE", overflow="fold")
    from meshbridge.usecases.placement import iso_time

    for r in rows:
        gone = short_time(iso_time(r.gone) or "")
        note = f"gone since {gone}" if r.gone is not None else "running"
        table.add_row(f"{r.app}.{r.namespace}", r.cluster, str(r.ready),
                      short_time(iso_time(r.found) or ""), note)
    out_console.print(table)
    count = len(placement_of(rows))
    err_console.print(f"{plural.count(count, 'discovered App')} placed", markup=False)


def rbac(
    user: Annotated[str | None, typer.Option("--user", metavar="NAME",
                                             help="Bind the roles to this user.")] = None,
    group: Annotated[str | None, typer.Option("--group", metavar="NAME",
                                              help="Bind the roles to this group.")] = None,
    service_account: Annotated[
        str | None,
        typer.Option("--service-account", metavar="NAMESPACE/NAME",
                     help="Bind the roles to this service account."),
    ] = None,
    without_discovery: Annotated[
        bool,
        typer.Option("--without-discovery",
                     help="Leave out placement discovery's role (no App has discover: {})."),
    ] = False,
) -> None:
    """Print the RBAC that lets meshbridge apply (and discover) in a cluster, and no more.

    ClusterRole and ClusterRoleBinding meshbridge-apply (namespaces, the Istio kinds it
    writes, nodes for gateway discovery), Role and RoleBinding meshbridge-apply in istio-system
    (its Secrets, the gateway Service) and ClusterRole and ClusterRoleBinding
    meshbridge-discovery (list and watch of Services, EndpointSlices, Deployments,
    StatefulSets, DaemonSets and Pods), for kubectl apply -f - in every cluster. The same for
    every cluster; docs/apply.md, "Permissions", says why each rule is there.
    """
    from meshbridge.kube.access import rbac_documents
    from meshbridge.output.emitter import dump_all

    given = [(k, v) for k, v in (("User", user), ("Group", group),
                                 ("ServiceAccount", service_account)) if v]
    if len(given) != 1:
        err_console.print("error: give one of --user, --group and --service-account",
                          style="red", markup=False)
        raise typer.Exit(2)
    kind, name = given[0]
    subject = {"kind": kind, "name": name}
    if kind == "ServiceAccount":
        namespace, _, sa = name.partition("/")
        if not namespace or not sa:
            err_console.print("error: --service-account takes NAMESPACE/NAME", style="red",
                              markup=False)
            raise typer.Exit(2)
        subject = {"kind": kind, "name": sa, "namespace": namespace}
    docs = rbac_documents(subject, discovery=not without_discovery)
    out_console.print(dump_all(docs).decode().rstrip("\n"), markup=False, highlight=False)
