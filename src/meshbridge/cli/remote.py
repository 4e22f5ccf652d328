"""Commands that talk to a meshbridge server: ``apply``, ``get``, ``delete``, and the helper
behind ``render --server``.

The server is ``--server URL`` (or ``MESHBRIDGE_SERVER``), the token ``--token`` (or
``MESHBRIDGE_TOKEN``; prefer the variable: a command line is visible to other users). An
``https`` server is verified against the system's trust, or against ``--server-ca FILE`` (or
``MESHBRIDGE_SERVER_CA``) alone; a server started with ``--tls-client-ca`` is shown the client
certificate in ``MESHBRIDGE_CLIENT_CERT`` / ``MESHBRIDGE_CLIENT_KEY``. The token is never sent
over plain HTTP to a host that is not loopback (see :mod:`meshbridge.client`). The same files
that ``validate`` and ``render`` read can be applied; problems name those files.
Exit codes as everywhere: 0 success, 1 failure, 2 invalid input or usage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshbridge import plural
from meshbridge.cli.common import (
    FilesOption,
    err_console,
    errors_mapped,
    out_console,
    print_object_states,
    short_time,
)
from meshbridge.cli.secret_placement import report
from meshbridge.errors import BadRequest, Conflict, ServerError
from meshbridge.usecases.sources import read_sources

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshbridge.client import ServerClient
    from meshbridge.output.writer import KeyPlacement
    from meshbridge.wire.messages import PlacementAnswer
    from meshbridge.wire.resources import ResourceKind

__all__ = [
    "CLIENT_CERT_ENV",
    "CLIENT_KEY_ENV",
    "Remote",
    "ServerCAOption",
    "ServerOption",
    "TokenOption",
    "apply",
    "apply_to_server",
    "delete",
    "get",
    "propagation_from_server",
    "render_remote",
    "status_from_server",
]

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="MESHBRIDGE_SERVER",
        show_envvar=True,
        help="A meshbridge server (meshbridge serve), e.g. https://meshbridge.internal:8443 "
        "(plain http only to a loopback address).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        envvar="MESHBRIDGE_TOKEN",
        show_envvar=True,
        help="API token for --server (prefer the environment variable).",
        show_default=False,
    ),
]
ServerCAOption = Annotated[
    Path | None,
    typer.Option(
        "--server-ca",
        metavar="FILE",
        envvar="MESHBRIDGE_SERVER_CA",
        show_envvar=True,
        help="PEM bundle of the CA that signed an https server's certificate (default: the "
        "system's trust).",
        show_default=False,
    ),
]
CLIENT_CERT_ENV = "MESHBRIDGE_CLIENT_CERT"
CLIENT_KEY_ENV = "MESHBRIDGE_CLIENT_KEY"
NamespaceOption = Annotated[
    str,
    typer.Option("-n", "--namespace", metavar="NS", help="Namespace of namespaced kinds."),
]


def _need_server(server: str | None, command: str) -> str:
    if not server:
        err_console.print(
            f"error: `meshbridge {command}` works against a meshbridge server for now: pass "
            "--server URL (or set MESHBRIDGE_SERVER)",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    return server


@dataclass(frozen=True)
class Remote:
    """A server as the command line names it: URL, token, and the CA that verifies it."""

    server: str
    token: str | None = None
    server_ca: Path | None = None

    def client(self) -> ServerClient:
        """A client of the server; checked (URL, TLS files) before anything is sent."""
        from meshbridge.client import ServerClient

        return ServerClient(
            self.server, self.token, server_ca=self.server_ca, client_cert=client_certificate()
        )


def client_certificate() -> tuple[Path, Path] | None:
    """(certificate, key) from ``MESHBRIDGE_CLIENT_CERT`` / ``MESHBRIDGE_CLIENT_KEY``, for a
    server that asks for one (``serve --tls-client-ca``); the key defaults to the certificate
    file (a PEM holding both)."""
    cert = os.environ.get(CLIENT_CERT_ENV, "").strip()
    if not cert:
        return None
    key = os.environ.get(CLIENT_KEY_ENV, "").strip() or cert
    return Path(cert).expanduser(), Path(key).expanduser()


def _kind(word: str) -> ResourceKind:
    from meshbridge.wire.resources import kind_named

    try:
        return kind_named(word)
    except BadRequest as exc:
        err_console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None


def _print_conflict(exc: Conflict) -> None:
    err_console.print(f"error: {exc}", style="red", markup=False)
    for problem in exc.problems:
        err_console.print(str(problem), markup=False)


def _describe(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind.lower()} {namespace + '/' if namespace else ''}{name}"


def apply(
    files: FilesOption,
    server: ServerOption = None,
    token: TokenOption = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also delete every stored document not given.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Report what would be stored; store nothing."),
    ] = False,
    server_ca: ServerCAOption = None,
) -> None:
    """Store intent documents on a meshbridge server: all of them or none.

    The whole resulting set of documents is validated by the server; on any problem nothing is
    stored, every problem is printed (naming your files) and the exit code is 2.
    """
    apply_to_server(
        files,
        _need_server(server, "apply"),
        token,
        prune=prune,
        dry_run=dry_run,
        server_ca=server_ca,
    )


def apply_to_server(
    files: list[str],
    server: str,
    token: str | None,
    *,
    prune: bool = False,
    dry_run: bool = False,
    server_ca: Path | None = None,
    wait_for: float | None = None,
) -> None:
    """``apply -f ... --server URL``: what the ``apply`` command does when given a server.
    With ``dry_run`` the server validates and answers what it would do, and stores nothing.
    With ``wait_for`` (seconds), then wait until the server reports the stored revision
    delivered to every cluster (its reconciler applies it and watches the proxies)."""
    from meshbridge.client import read_documents  # the HTTP client: only when needed

    with errors_mapped():
        remote = Remote(server, token, server_ca)
        docs = read_documents(read_sources(files))
        try:
            with remote.client() as client:
                result = client.apply(docs, prune=prune, dry_run=dry_run)
        except Conflict as exc:
            _print_conflict(exc)
            raise typer.Exit(1) from None
    suffix = " (dry run)" if dry_run else ""
    for item in result.items:
        what = _describe(item.kind, item.namespace, item.name)
        out_console.print(f"{what} {item.action}{suffix}", markup=False)
    if wait_for is not None:
        _wait_on_server(remote, int(result.metadata.resource_version or 0), wait_for)


def _wait_on_server(remote: Remote, revision: int, wait_for: float) -> None:
    """Poll the server's status until ``revision`` (or a later one) is delivered everywhere;
    exit 1 naming the clusters that are not, after ``wait_for`` seconds."""
    import time

    from meshbridge.cli import propagation as propagation_cmd

    deadline = time.monotonic() + wait_for
    with errors_mapped(), remote.client() as client:
        while True:
            found = client.status()
            answer = found.propagation
            done = (answer is not None and int(answer.revision or 0) >= revision
                    and answer.delivered)
            if done or time.monotonic() + 1 > deadline:
                break
            time.sleep(1)
    views = [rec.propagation for rec in found.items if rec.propagation is not None]
    if found.propagation is None:
        err_console.print("error: this server does not report propagation", style="red",
                          markup=False)
        raise typer.Exit(1)
    if done:
        propagation_cmd.report_wait(views, wait_for)
        return
    propagation_cmd.print_views(views, "table")
    pending = ", ".join(found.propagation.pending) or "the reconciler has not applied it yet"
    err_console.print(f"error: revision {revision} not delivered after {wait_for:g}s: "
                      f"{pending}", style="red", markup=False)
    raise typer.Exit(1)


def get(
    kind: Annotated[str, typer.Argument(help="mesh, cluster, app, inboundintent, externalservice")],
    name: Annotated[
        str | None, typer.Argument(help="One object's name; all when left out.")
    ] = None,
    namespace: NamespaceOption = "default",
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="List in every namespace.")
    ] = False,
    selector: Annotated[
        str | None, typer.Option("-l", "--selector", metavar="K=V,...", help="Label selector.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", metavar="yaml|json", help="Print documents.")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    server_ca: ServerCAOption = None,
) -> None:
    """Show documents stored on a meshbridge server (a table, or -o yaml|json)."""
    remote = Remote(_need_server(server, "get"), token, server_ca)
    rk = _kind(kind)
    if output not in (None, "yaml", "json"):
        err_console.print("error: -o takes yaml or json", style="red", markup=False)
        raise typer.Exit(2)
    with errors_mapped(), remote.client() as client:
        if name is not None:
            found: dict[str, Any] = client.get(rk, name, namespace if rk.namespaced else "")
            items = [found]
        else:
            found = client.list(rk, None if all_namespaces else namespace, selector)
            items = found.get("items", [])
    if output == "json":
        out_console.print(json.dumps(found, indent=2), markup=False, highlight=False)
    elif output == "yaml":
        import yaml

        out_console.print(
            yaml.safe_dump_all(items, sort_keys=False).rstrip("\n"), markup=False, highlight=False
        )
    else:
        _table(rk, items)


def _table(rk: ResourceKind, items: list[dict[str, Any]]) -> None:
    if not items:
        err_console.print(f"no {rk.plural} found", markup=False)
        return
    rows = [
        ((it["metadata"].get("namespace", ""),) if rk.namespaced else ())
        + (
            it["metadata"]["name"],
            it["metadata"].get("resourceVersion", ""),
            it["metadata"].get("creationTimestamp", ""),
        )
        for it in items
    ]
    header = (("NAMESPACE",) if rk.namespaced else ()) + ("NAME", "VERSION", "CREATED")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
        out_console.print(line.rstrip(), markup=False, highlight=False)


def delete(
    kind: Annotated[str, typer.Argument(help="mesh, cluster, app, inboundintent, externalservice")],
    name: Annotated[str, typer.Argument(help="The object's name.")],
    namespace: NamespaceOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    server_ca: ServerCAOption = None,
) -> None:
    """Delete one document on a meshbridge server.

    Refused (exit 1, nothing deleted) while other documents still refer to it; the problems
    name them.
    """
    remote = Remote(_need_server(server, "delete"), token, server_ca)
    rk = _kind(kind)
    ns = namespace if rk.namespaced else ""
    with errors_mapped():
        try:
            with remote.client() as client:
                client.delete(rk, name, ns)
        except Conflict as exc:
            _print_conflict(exc)
            raise typer.Exit(1) from None
    out_console.print(f"{_describe(rk.kind, ns, name)} deleted", markup=False)


def status_from_server(
    remote: Remote, *, objects: bool = False,
    placements: Callable[[PlacementAnswer], None] | None = None,
) -> None:
    """``status --server``: every cluster's last reconcile on the server, by which replica,
    its last success and failures since; the replicas; the documents left out of renders; the
    discovered placements (handed to ``placements``). Exit 1 when a cluster's last reconcile
    failed or could not reach it, or documents are."""
    from rich.table import Table

    with errors_mapped(), remote.client() as client:
        found = client.status()
        flagged = client.problems()
        placed = _placements(client) if placements is not None else None
    if not found.reconciler:
        err_console.print("this server runs no reconciler (serve --reconcile-interval 0)",
                          markup=False)
    table = Table(box=None, pad_edge=False)
    for col in ("CLUSTER", "STATE", "OBJECTS", "REPLICA", "LAST RUN (UTC)", "LAST SUCCESS",
                "FAILURES"):
        table.add_column(col, no_wrap=True)
    table.add_column("ERROR", overflow="fold")
    for rec in found.items:
        run = rec.last_run
        replica = (rec.lease.holder if rec.lease else "") or (run.replica if run else "")
        when = (run.finished or f"{run.started} (running)") if run else ""
        table.add_row(
            rec.cluster,
            rec.state,
            str(len(rec.objects)),
            replica,
            short_time(when),
            short_time(rec.last_success or ""),
            str(rec.failures),
            rec.error,
        )
    if found.items:
        out_console.print(table)
    else:
        err_console.print("no reconcile recorded yet", markup=False)
    if objects:
        print_object_states(
            (rec.cluster, o.object, o.state, o.reason) for rec in found.items for o in rec.objects
        )
    if found.replicas:
        seen = ", ".join(f"{r.id} (seen {short_time(r.seen or '')})" for r in found.replicas)
        out_console.print(f"replicas: {seen}", markup=False)
    if placements is not None and placed is not None:
        placements(placed)
    for item in flagged.items:
        first = item.problems[0] if item.problems else None
        where = f" {first.path}" if first and first.path else ""
        err_console.print(
            f"{item.path}: {item.reason}, left out of renders:{where} "
            f"{first.message if first else ''}",
            style="yellow", markup=False,
        )
    failed = any(rec.state in ("Failed", "Unreachable") for rec in found.items)
    if failed or flagged.items or flagged.set:
        raise typer.Exit(1)


def propagation_from_server(remote: Remote, output: str, intent: str | None) -> None:
    """``status --propagation --server`` (or an intent named): what the server's reconciler
    last saw of each cluster's propagation; exit 1 unless every cluster is delivered."""
    from meshbridge.cli import propagation as propagation_cmd

    with errors_mapped(), remote.client() as client:
        found = client.status()
    views = {rec.cluster: rec.propagation for rec in found.items if rec.propagation is not None}
    statuses = [rec.to_json() for rec in found.items]
    propagation_cmd.finish(statuses, views, output, intent)


def _placements(client: ServerClient) -> PlacementAnswer | None:
    """The server's discovered placements; None from a server older than them (404)."""
    try:
        return client.placements()
    except ServerError as exc:
        if exc.status == 404:
            return None
        raise


def render_remote(
    server: str,
    token: str | None,
    output: Path,
    files: list[str] | None = None,
    placement: KeyPlacement | None = None,
    server_ca: Path | None = None,
) -> None:
    """``render --server URL -o DIR``: the server's stored documents, rendered into DIR, with
    Secrets holding a private key placed as for a local render (left out by default).

    ``-f`` is refused with --server: the server renders what it stores (apply files first).
    """
    if files:
        err_console.print(
            "error: render --server renders the documents the server stores; apply your files "
            "first (meshbridge apply -f ... --server URL), then render without -f",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    with errors_mapped():
        from meshbridge.client import render_from_server

        result, written = render_from_server(
            server,
            token,
            output,
            placement,
            server_ca=server_ca,
            client_cert=client_certificate(),
        )
    for cluster, count in sorted(result.objects.items()):
        out_console.print(f"{cluster}: {plural.count(count, 'object')}", markup=False)
    summary = (
        f"{plural.count(written.files, 'file')} for "
        f"{plural.count(len(result.objects), 'cluster')}"
    )
    if written.output in written.unchanged:  # already the render: nothing written or touched
        done = f"{output} already holds this render ({summary}): nothing written"
    else:
        done = f"wrote {summary} to {output}"
    out_console.print(f"{done} (server revision {result.revision})", markup=False)
    report(written)
