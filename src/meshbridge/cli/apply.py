"""apply, diff and status: the commands that touch live clusters.

The services (models, compiler, Kubernetes client, store) are imported by the commands that use
them, not whenever the CLI starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from meshbridge.cli import placement as placement_cmd
from meshbridge.cli import remote as remote_cmd
from meshbridge.cli.common import (
    FilesOption,
    StateOption,
    err_console,
    errors_mapped,
    out_console,
    print_object_states,
    short_time,
    state_path,
)
from meshbridge.usecases.sources import read_sources

if TYPE_CHECKING:
    from rich.table import Table

    from meshbridge.kube import ClusterReport, ReconcileOptions

ClusterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--cluster",
        "-c",
        metavar="NAME",
        help="Only this cluster (repeat for more). Default: every cluster.",
    ),
]
ParallelOption = Annotated[
    int, typer.Option("--parallel", metavar="N", min=1, max=64, help="Clusters reconciled at the same time.")
]
RetriesOption = Annotated[
    int,
    typer.Option(
        "--retries",
        metavar="N",
        min=1,
        max=20,
        help="Attempts per unreachable cluster, the wait doubling from 0.5 s.",
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", min=0.5, help="Seconds to wait for each API request.")
]


def _summary(reports: list[ClusterReport], title: str) -> Table:
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        show_edge=False,
        caption="new: created, upd: updated, same: unchanged, del: deleted (pruned), "
        "confl: name conflicts, fail: failed writes",
        caption_justify="left",
    )
    for col in ("cluster", "state", "new", "upd", "same", "del", "confl", "fail", "tries"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    colour = {"Applied": "green", "Planned": "cyan", "Failed": "red", "Unreachable": "red"}
    for r in reports:
        o = r.outcome
        table.add_row(
            r.cluster,
            f"[{colour[r.state]}]{r.state}[/]",
            str(o.count("create")),
            str(o.count("update")),
            str(o.count("unchanged")),
            str(o.count("delete")),
            str(o.count("conflict")),
            str(o.count("failed")),
            str(r.attempts),
            r.error,
        )
    return table


def _run(
    files: list[str],
    state: str | None,
    options: ReconcileOptions,
    clusters: list[str] | None,
    verb: str,
    *,
    replace_root: bool = False,
    adopt_mesh_id: str | None = None,
    lease_wait: float = 120.0,
) -> list[ClusterReport]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meshbridge.server import leases
    from meshbridge.store import open_store
    from meshbridge.usecases import apply as apply_service
    from meshbridge.usecases import rootguard
    from meshbridge.usecases.render import parse

    with errors_mapped():
        intents = parse(read_sources(files))  # before the store: bad input must not create it
        location = state_path(state)
        store = open_store(location)
        try:
            prepared, checked = rootguard.prepare(
                store,
                location,
                lambda: apply_service.prepare(intents, store, location, options),
                options,
                clusters,
                replace_root=replace_root,
                adopt_mesh_id=adopt_mesh_id,
            )
            if checked.took is not None:
                err_console.print(
                    f"note: this store {'would take' if options.dry_run else 'now carries'} the "
                    f"identity of mesh {prepared.mesh.name!r}, {checked.took}, which the "
                    f"clusters' objects carry: the store of that mesh was lost, and this one "
                    f"replaces it",
                    style="yellow",
                    markup=False,
                )
            if checked.replacements:  # only with --replace-root
                err_console.print(
                    f"warning: {rootguard.describe(checked)} (--replace-root): restart istiod, "
                    "then every workload, in every cluster",
                    style="yellow",
                    markup=False,
                )
            total = len(prepared.targets)
            with Progress(
                TextColumn(f"{verb} clusters"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
                disable=total < 2 or not err_console.is_terminal,  # nothing in pipes and logs
            ) as bar:
                task = bar.add_task(verb, total=total)
                # one writer per cluster: the leases the server's replicas take too
                names = [t.name for t in prepared.targets]
                with leases.holding(
                    store,
                    names,
                    writes=not options.dry_run,
                    wait=lease_wait,
                    waiting=lambda m: err_console.print(m, style="yellow", markup=False),
                ):
                    reports = apply_service.reconcile(
                        prepared, options, progress=lambda _r: bar.advance(task)
                    )
            reports = rootguard.merged(checked, reports)
            if not options.dry_run:
                apply_service.finish(store, prepared, reports)
                rootguard.record(store, checked, reports)
        finally:
            store.close()
    for d in prepared.found:
        if d.address is not None:
            err_console.print(
                f"{d.cluster}: gateway discovered at {d.address.address}:"
                f"{d.address.port} ({d.address.source})",
                markup=False,
            )
        else:
            err_console.print(
                f"{d.cluster}: gateway discovery failed: {d.error}", style="yellow", markup=False
            )
    placement_cmd.report_placed(prepared.placed, dry_run=options.dry_run)
    placement_cmd.print_uncovered(prepared.uncovered)
    return reports


def apply(
    files: FilesOption,
    state: StateOption = None,
    cluster: ClusterOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
    ] = False,
    force_conflicts: Annotated[
        bool,
        typer.Option(
            "--force-conflicts",
            help="Take over objects of the same name that no meshbridge mesh owns (they are "
            "overwritten and from then on managed and pruned by meshbridge). Objects of "
            "another meshbridge mesh are never taken.",
        ),
    ] = False,
    replace_root: Annotated[
        bool,
        typer.Option(
            "--replace-root",
            help="Write cacerts even where its root is not the one the cluster trusts now "
            "(clusters distrust each other until all have the new root and istiod and every "
            "workload restarted). Without it apply stops, writing nothing, and names the "
            "clusters and both roots.",
        ),
    ] = False,
    adopt_mesh_id: Annotated[
        str | None,
        typer.Option(
            "--adopt-mesh-id",
            metavar="ID",
            help="This state store replaces a lost one: take over that mesh's identity (the "
            "meshbridge.dev/mesh-id label of its objects) before writing. Not needed when the "
            "store holds the clusters' live root again (pki import): apply takes it then.",
        ),
    ] = None,
    parallel: ParallelOption = 4,
    retries: RetriesOption = 3,
    timeout: TimeoutOption = 10.0,
    lease_wait: Annotated[
        float,
        typer.Option(
            "--lease-wait",
            min=0,
            metavar="SECONDS",
            help="On a store meshbridge serve replicas share: wait this long for a replica "
            "reconciling one of the clusters, then exit 1 naming it.",
        ),
    ] = 120.0,
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
) -> None:
    """Apply the rendered mesh to live clusters (server-side apply, pruning, drift correction).

    With --server, the documents are stored on a meshbridge server instead (all or none), which
    reconciles the clusters itself; with --dry-run too, the server only checks them and reports
    what it would store.

    Every object is labelled as managed by meshbridge and with the identity of this state
    store's mesh; objects of that mesh it no longer wants are deleted; objects it does not own
    (another mesh's, or nobody's) are never touched (a name collision is reported as a
    conflict). Namespaces it creates are labelled istio-injection=enabled (unless the Mesh's
    spec.istio.sidecarInjection is false). Unchanged objects are not written. Before writing to
    any cluster, every cluster's live cacerts is read: if one would get a root it does not trust
    now (a lost state store, a root replaced outside 'pki rotate-root'), nothing is written and
    apply exits 1 (see --replace-root). Exit 0 when every cluster is applied, 1 when any failed
    or was unreachable, 2 on invalid input.
    """
    if server:
        if replace_root or adopt_mesh_id:
            err_console.print(
                "error: --replace-root and --adopt-mesh-id are for clusters apply writes "
                "itself; a server's reconciler never replaces a root (see docs/pki.md)",
                style="red",
                markup=False,
            )
            raise typer.Exit(2)
        remote_cmd.apply_to_server(files, server, token, dry_run=dry_run, server_ca=server_ca)
        return
    from meshbridge.kube import ReconcileOptions

    options = ReconcileOptions(
        dry_run=dry_run,
        force_conflicts=force_conflicts,
        parallel=parallel,
        retries=retries,
        timeout=timeout,
    )
    verb = "planning" if dry_run else "applying"
    reports = _run(
        files,
        state,
        options,
        cluster,
        verb,
        replace_root=replace_root,
        adopt_mesh_id=adopt_mesh_id,
        lease_wait=lease_wait,
    )
    for r in reports:
        for c in r.outcome.changes:
            if c.action in ("conflict", "failed"):
                err_console.print(
                    f"{r.cluster}: {c.action} {c.ref}: {c.reason}", style="red", markup=False
                )
    out_console.print(_summary(reports, "dry run" if dry_run else "apply"))
    if any(r.state in ("Failed", "Unreachable") for r in reports):
        raise typer.Exit(1)


def diff(
    files: FilesOption,
    state: StateOption = None,
    cluster: ClusterOption = None,
    parallel: ParallelOption = 4,
    retries: RetriesOption = 1,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Show, per cluster, what apply would create, change (with a diff) and delete.

    Exit 0 when nothing would change, 1 when something would, 3 when a cluster could not be
    read, 2 on invalid input.
    """
    from meshbridge.kube import ReconcileOptions

    options = ReconcileOptions(
        dry_run=True, with_diff=True, parallel=parallel, retries=retries, timeout=timeout
    )
    reports = _run(files, state, options, cluster, "diffing")
    signs = {"create": "+", "update": "~", "delete": "-", "conflict": "!", "failed": "!"}
    changed = False
    for r in reports:
        out_console.print(f"== {r.cluster} ({r.state})", markup=False)
        if r.error:
            out_console.print(f"   {r.error}", markup=False)
        for c in r.outcome.changes:
            if c.action in signs:
                changed = True
                reason = f"  ({c.reason})" if c.reason else ""
                out_console.print(f"{signs[c.action]} {c.action} {c.ref}{reason}", markup=False)
                if c.diff:
                    out_console.print(c.diff, markup=False, end="")
    if any(r.state in ("Failed", "Unreachable") and not r.outcome.changes for r in reports):
        raise typer.Exit(3)
    if changed:
        raise typer.Exit(1)


def status_cmd(
    state: StateOption = None,
    objects: Annotated[
        bool, typer.Option("--objects", help="List every object's state too.")
    ] = False,
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
) -> None:
    """Show the last apply's result per cluster (and per object), from the state store.

    With --server, the server's: each cluster's last reconcile, by which replica, its last
    success and failures since, and the stored documents left out of renders.

    Exit 1 when a cluster's last apply failed or could not reach it. A store that does not
    exist is reported as such and not created.
    """
    if server:
        remote_cmd.status_from_server(remote_cmd.Remote(server, token, server_ca),
                                      objects=objects, placements=placement_cmd.status_view)
        return
    from rich.table import Table

    from meshbridge.store import open_store, store_exists
    from meshbridge.usecases import apply as apply_service

    location = state_path(state)
    if not store_exists(location):
        err_console.print(f"no state store at {location}: nothing applied yet", markup=False)
        return
    with errors_mapped():
        store = open_store(location)
        try:
            records = apply_service.cluster_statuses(store)
        finally:
            store.close()
    if not records:
        err_console.print("no apply recorded yet", markup=False)
        with errors_mapped():
            placement_cmd.status_section(location)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("CLUSTER", "STATE", "OBJECTS", "APPLIED", "FAILED", "PENDING", "TIME (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("ERROR", overflow="fold")
    for rec in records:
        states = [o["state"] for o in rec["objects"]]
        table.add_row(
            rec["cluster"],
            rec["state"],
            str(len(states)),
            str(states.count("Applied")),
            str(states.count("Failed")),
            str(states.count("Pending") + states.count("Unreachable")),
            short_time(rec["time"]),
            rec["error"],
        )
    out_console.print(table)
    if objects:
        print_object_states(
            (rec["cluster"], o["object"], o["state"], o["reason"])
            for rec in records
            for o in rec.get("objects", [])
        )
    with errors_mapped():
        placement_cmd.status_section(location)
    if any(rec["state"] in ("Failed", "Unreachable") for rec in records):
        raise typer.Exit(1)
