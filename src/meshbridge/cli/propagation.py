"""``apply --wait``, ``status --propagation`` and ``status KIND/NAMESPACE/NAME``: how far each
cluster's last apply has got (applied, observed by istiod, delivered to every proxy).

The levels and how they are read: ``meshbridge.usecases.propagation``; docs/apply.md,
"Propagation".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshbridge import plural
from meshbridge.cli.common import err_console, out_console, short_time

if TYPE_CHECKING:
    from rich.table import Table

    from meshbridge.kube import ClusterAccess, ClusterReport, ReconcileOptions
    from meshbridge.kube.istiod import ClusterReading
    from meshbridge.store import Store
    from meshbridge.wire.messages import ClusterPropagation, IntentPropagation

BASELINE_TIMEOUT = 5.0  # at most this long per request for the reading before the write

OutputOption = Annotated[
    str,
    typer.Option("-o", "--output", metavar="table|json",
                 help="How to print: a table, or JSON (one object per cluster)."),
]
COLOURS = {"delivered": "green", "observed": "yellow", "applied": "yellow", "nack": "red",
           "istiod-unreachable": "red", "unreachable": "red"}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def duration(text: str) -> float:
    """``2m``, ``90s``, ``1m30s``, ``1h``, or a number of seconds -> seconds; exit 2 if not."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        found = _DURATION.match(value)
        if not value or found is None:
            raise typer.BadParameter(f"{text!r} is not a duration (e.g. 2m, 90s, 1m30s)") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in found.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r}: a duration must be more than 0")
    return seconds


def check_output(output: str) -> None:
    if output not in ("table", "json"):
        err_console.print(f"error: -o {output!r}: use table or json", style="red", markup=False)
        raise typer.Exit(2)


def _print(table: Table) -> None:
    """A table whole: on a terminal as wide as it is, else (a pipe, a file) as wide as its
    rows need, never cut."""
    if out_console.is_terminal:
        out_console.print(table)
        return
    from rich.console import Console
    from rich.measure import Measurement

    wide = Measurement.get(out_console, out_console.options.update(width=10_000), table)
    Console(highlight=False, width=max(80, wide.maximum)).print(table)


def _delivery(view: ClusterPropagation) -> str:
    """Write to delivered: measured when meshbridge watched it (apply --wait, the server);
    else at most the time from the apply to the first check that found it delivered."""
    if view.seconds is not None:
        return f"{view.seconds:.2f}s"
    if not (view.delivered_at and view.since):
        return ""
    from datetime import datetime

    took = datetime.fromisoformat(view.delivered_at) - datetime.fromisoformat(view.since)
    return f"≤{took.total_seconds():.1f}s"


def print_views(views: Sequence[ClusterPropagation], output: str) -> None:
    """The clusters' propagation: a table (and each NACK on a line of its own) or JSON."""
    if output == "json":
        out_console.print_json(json.dumps([v.to_json() for v in views]))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("CLUSTER", "STATE", "APPLIED", "OBSERVED", "DELIVERED", "NACKS", "CHANGED (UTC)",
                "WRITE→DELIVERED"):
        table.add_column(col, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for v in views:
        table.add_row(
            v.cluster,
            f"[{COLOURS[v.state]}]{v.state}[/]",
            v.applied,
            f"{v.observed}/{v.objects}",
            f"{v.acked}/{plural.count(v.proxies, 'proxy', 'proxies')}",
            str(len(v.nacks)),
            short_time(v.since or ""),
            _delivery(v),
            v.reason,
        )
    _print(table)
    from meshbridge.usecases.propagation import last_line

    for v in views:
        for nack in v.nacks:
            err_console.print(f"{v.cluster}: {nack.proxy} rejected {nack.type}: "
                              f"{last_line(nack.error, 1000)}", style="red", markup=False)


def print_intent(found: IntentPropagation, output: str) -> None:
    if output == "json":
        out_console.print_json(json.dumps(found.to_json()))
        return
    if not found.clusters:
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("CLUSTER", "OBJECT", "APPLIED", "RESOURCE VERSION", "IN ISTIOD", "CLUSTER STATE"):
        table.add_column(col, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    held = {True: "yes", False: "no", None: "-"}
    for cluster in found.clusters:
        for i, obj in enumerate(cluster.objects):
            state = cluster.state or "not read"
            first = i == 0
            table.add_row(
                cluster.cluster if first else "", obj.object, obj.applied, obj.resource_version,
                held[obj.observed],
                f"[{COLOURS.get(state, 'white')}]{state}[/]" if first else "",
                cluster.reason if first else "",
            )
    _print(table)


def before_writing(targets: list[ClusterAccess], options: ReconcileOptions
                   ) -> dict[str, ClusterReading]:
    """``apply --wait``: every cluster's istiods just before the write (what its propagation
    is measured against)."""
    import asyncio

    from meshbridge.usecases import delivery

    timeout = min(options.timeout, BASELINE_TIMEOUT)
    return asyncio.run(delivery.baseline(targets, timeout))


def wait_after(
    store: Store,
    targets: list[ClusterAccess],
    reports: list[ClusterReport],
    before: dict[str, ClusterReading],
    written: float,
    wait_for: float,
    options: ReconcileOptions,
) -> list[ClusterPropagation]:
    """``apply --wait``, once written: wait for the clusters the apply changed (none when a
    cluster failed: apply exits 1 anyway), with progress on a terminal."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meshbridge.usecases import delivery

    if any(r.state != "Applied" for r in reports):
        err_console.print("--wait: not waiting, the apply did not succeed everywhere",
                          markup=False)
        return []
    by_name = {r.cluster: r for r in reports}
    watched = [
        delivery.Watched(t, before.get(t.name), by_name[t.name].outcome.changes, written)
        for t in targets
        if t.name in by_name and any(c.action in ("create", "update", "delete")
                                     for c in by_name[t.name].outcome.changes)
    ]
    if not watched:
        return []
    with Progress(TextColumn("waiting for proxies: clusters delivered"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("wait", total=len(watched))

        def progress(views: list[ClusterPropagation]) -> None:
            bar.update(task, completed=sum(v.state == "delivered" for v in views))

        return asyncio.run(delivery.wait(store, watched, timeout=wait_for,
                                         request_timeout=options.timeout, progress=progress))


def not_delivered(views: Iterable[ClusterPropagation]) -> list[ClusterPropagation]:
    return [v for v in views if v.state != "delivered"]


def report_wait(views: Sequence[ClusterPropagation], timeout: float) -> None:
    """After ``apply --wait``: the table; exit 1 naming what is missing unless every cluster
    the apply changed is delivered."""
    if not views:
        err_console.print("--wait: no cluster was changed; nothing to wait for", markup=False)
        return
    print_views(views, "table")
    missing = not_delivered(views)
    if not missing:
        err_console.print(f"delivered: every proxy of {plural.count(len(views), 'cluster')} "
                          "has ACKed the change", markup=False)
        return
    for v in missing:
        when = "" if v.state == "nack" else f" after {timeout:g}s"
        err_console.print(f"error: {v.cluster} not delivered{when} ({v.state}): {v.reason}",
                          style="red", markup=False)
        for p in v.pending[:10]:
            what = f" {p.type}" if p.type else ""
            err_console.print(f"  {p.proxy}{what}: {p.why}", markup=False)
        for proxy in v.disconnected:
            err_console.print(f"  {proxy}: disconnected since the change", markup=False)
    raise typer.Exit(1)


def status_local(state: str, output: str, intent: str | None) -> None:
    """``status --propagation`` / ``status KIND/NS/NAME`` on the local state store: every
    cluster's istiods read live through the kubeconfig its last apply recorded."""
    from meshbridge.cli.common import read_local
    from meshbridge.usecases import apply as apply_service
    from meshbridge.usecases import delivery

    def read(store: Store) -> tuple[list[dict[str, Any]], list[ClusterPropagation]]:
        statuses = apply_service.cluster_statuses(store)
        return statuses, delivery.check(store, delivery.recorded_targets(statuses))

    found = read_local(state, read)
    if found is not None:
        statuses, views = found
        finish(statuses, {v.cluster: v for v in views}, output, intent)


def finish(statuses: list[dict[str, Any]], views: dict[str, ClusterPropagation], output: str,
           intent: str | None) -> None:
    """Print the clusters (or one intent's) and exit 1 unless delivered."""
    from meshbridge.usecases import propagation

    if intent is not None:
        found = propagation.for_intent(intent, statuses, views)
        if not found.clusters:
            err_console.print(f"error: no object of the last apply was made for {intent}",
                              style="red", markup=False)
            raise typer.Exit(1)
        print_intent(found, output)
        if any(c.state != "delivered" for c in found.clusters):
            raise typer.Exit(1)
        return
    if not views:
        err_console.print("no apply recorded yet", markup=False)
        return
    ordered = [views[c] for c in sorted(views)]
    print_views(ordered, output)
    if not_delivered(ordered):
        raise typer.Exit(1)


def intent_ref(text: str) -> str:
    """``KIND/NAMESPACE/NAME`` (or ``KIND/NAME``) as the user wrote it; exit 2 if not that."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        err_console.print(f"error: {text!r}: name an intent as KIND/NAMESPACE/NAME, e.g. "
                          "InboundIntent/bar/httpbin", style="red", markup=False)
        raise typer.Exit(2)
    return text
