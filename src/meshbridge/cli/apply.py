"""apply, diff and status: the commands that touch live clusters.

The services (models, compiler, Kubernetes client, store) are imported by the commands that use
them, not whenever the CLI starts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshbridge.cli import placement as placement_cmd
from meshbridge.cli import propagation as propagation_cmd
from meshbridge.cli import remote as remote_cmd
from meshbridge.cli.common import (
    FilesOption,
    StateOption,
    err_console,
    errors_mapped,
    out_console,
    print_object_states,
    read_local,
    short_time,
    state_path,
)
from meshbridge.usecases.sources import read_sources

if TYPE_CHECKING:
    from rich.table import Table

    from meshbridge.kube import ClusterReport, ReconcileOptions
    from meshbridge.store import Store
    from meshbridge.usecases.istiod_roots import Finding
    from meshbridge.wire.messages import ClusterPropagation

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
WAIT_DEFAULT = "2m"


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
    wait_for: float | None = None,
) -> tuple[list[ClusterReport], list[ClusterPropagation]]:
    """Plan, check the root of trust, write (holding the clusters' leases), record; with
    ``wait_for`` (seconds), then wait until every changed cluster is delivered."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meshbridge.server import leases
    from meshbridge.store import open_store
    from meshbridge.usecases import apply as apply_service
    from meshbridge.usecases import rootguard
    from meshbridge.usecases.istiod_roots import restarts_for
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
                    before = (propagation_cmd.before_writing(prepared.targets, options)
                              if wait_for is not None else {})
                    reports = apply_service.reconcile(
                        prepared, options, progress=lambda _r: bar.advance(task)
                    )
                    written = time.monotonic()
            reports = rootguard.merged(checked, reports)
            istiods: list[Finding] = []
            views: list[ClusterPropagation] = []
            if not options.dry_run:
                apply_service.finish(store, prepared, reports)
                istiods = rootguard.record(store, checked, reports, restarts_for(intents))
                if wait_for is not None:
                    views = propagation_cmd.wait_after(
                        store, prepared.targets, reports, before, written, wait_for, options
                    )
        finally:
            store.close()
    print_istiods(istiods)
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
    return reports, views


def print_istiods(found: list[Finding]) -> None:
    """Each istiod not signing with the cacerts its cluster holds: why, and what to do."""
    for f in found:
        style = None if f.state == "loading" else "yellow"
        for line in f.describe():
            err_console.print(line, style=style, markup=False, soft_wrap=True)


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
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="After writing, wait until every cluster the apply changed is delivered: "
            "istiod holds the objects at the resourceVersions written and every proxy has ACKed "
            "a push of them (docs/apply.md, 'Propagation'). Exit 1 naming what is missing.",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help=f"With --wait: how long to wait (2m, 90s, 1m30s; default {WAIT_DEFAULT}). "
            "Without --wait, a number of seconds is the per-request timeout, as before "
            "(now --request-timeout).",
            show_default=False,
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option("--request-timeout", metavar="SECONDS", min=0.5,
                     help="Seconds to wait for each API request (default 10).",
                     show_default=False),
    ] = None,
    parallel: ParallelOption = 4,
    retries: RetriesOption = 3,
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
    apply exits 1 (see --replace-root). Exit 0 when every cluster is applied (with --wait:
    and delivered), 1 when any failed or was unreachable (or, with --wait, is not delivered in
    time), 2 on invalid input.
    """
    wait_for, per_request = _timeouts(wait, timeout, request_timeout, dry_run)
    if server:
        if replace_root or adopt_mesh_id:
            err_console.print(
                "error: --replace-root and --adopt-mesh-id are for clusters apply writes "
                "itself; a server's reconciler never replaces a root (see docs/pki.md)",
                style="red",
                markup=False,
            )
            raise typer.Exit(2)
        remote_cmd.apply_to_server(files, server, token, dry_run=dry_run, server_ca=server_ca,
                                   wait_for=wait_for)
        return
    from meshbridge.kube import ReconcileOptions

    options = ReconcileOptions(
        dry_run=dry_run,
        force_conflicts=force_conflicts,
        parallel=parallel,
        retries=retries,
        timeout=per_request,
    )
    verb = "planning" if dry_run else "applying"
    reports, views = _run(
        files,
        state,
        options,
        cluster,
        verb,
        replace_root=replace_root,
        adopt_mesh_id=adopt_mesh_id,
        lease_wait=lease_wait,
        wait_for=wait_for,
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
    if wait_for is not None:
        propagation_cmd.report_wait(views, wait_for)


def _timeouts(
    wait: bool, timeout: str | None, request_timeout: float | None, dry_run: bool
) -> tuple[float | None, float]:
    """(how long --wait waits, or None without it; seconds per API request). Without
    --wait, --timeout keeps its former meaning (seconds per request)."""
    if wait and dry_run:
        err_console.print("error: --wait with --dry-run: nothing is written, so nothing "
                          "propagates", style="red", markup=False)
        raise typer.Exit(2)
    if wait:
        return propagation_cmd.duration(timeout or WAIT_DEFAULT), request_timeout or 10.0
    if timeout is not None:
        seconds = propagation_cmd.duration(timeout)
        if request_timeout is None:
            err_console.print("note: --timeout without --wait is the per-request timeout: "
                              "--request-timeout is its name now", markup=False)
            return None, max(0.5, seconds)
    return None, request_timeout or 10.0


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
    reports, _ = _run(files, state, options, cluster, "diffing")
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
    intent: Annotated[
        str | None,
        typer.Argument(
            metavar="[KIND/NAMESPACE/NAME]",
            help="An intent (e.g. InboundIntent/bar/httpbin): every cluster its objects live "
            "in and where each stands (istiod read live, as with --propagation).",
            show_default=False,
        ),
    ] = None,
    state: StateOption = None,
    objects: Annotated[
        bool, typer.Option("--objects", help="List every object's state too.")
    ] = False,
    propagation: Annotated[
        bool,
        typer.Option(
            "--propagation",
            help="How far each cluster's last apply has got: applied, observed by istiod, "
            "delivered to every proxy (NACKs, proxies not in sync or disconnected); istiod is "
            "read live through the API server (docs/apply.md, 'Propagation').",
        ),
    ] = False,
    output: propagation_cmd.OutputOption = "table",
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
) -> None:
    """Show the last apply's result per cluster (and per object), from the state store.

    With --propagation (or an intent named), how far it has got in each cluster: exit 1 unless
    every cluster is delivered. With --server, the server's: each cluster's last reconcile, by
    which replica, its last success and failures since, and the stored documents left out of
    renders (and what its reconciler last saw of propagation).

    Exit 1 when a cluster's last apply failed or could not reach it. A store that does not
    exist is reported as such and not created.
    """
    propagation_cmd.check_output(output)
    if intent is not None:
        intent = propagation_cmd.intent_ref(intent)
    if server:
        remote = remote_cmd.Remote(server, token, server_ca)
        if propagation or intent is not None:
            remote_cmd.propagation_from_server(remote, output, intent)
            return
        remote_cmd.status_from_server(remote, objects=objects,
                                      placements=placement_cmd.status_view)
        return
    location = state_path(state)
    if propagation or intent is not None:
        propagation_cmd.status_local(location, output, intent)
        return
    from rich.table import Table

    from meshbridge.usecases import apply as apply_service
    from meshbridge.usecases import istiod_roots
    from meshbridge.usecases import pki as pki_service

    def read(store: Store) -> tuple[list[dict[str, Any]], list[Finding]]:
        istiods = istiod_roots.findings(
            store,
            sorted(istiod_roots.read_istiod(store)),
            pki_service.trusted_fingerprints(store),
            datetime.now(UTC),
        )
        return apply_service.cluster_statuses(store), istiods

    read_back = read_local(location, read)
    if read_back is None:
        return
    records, istiods = read_back
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
    print_istiods(istiods)
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
