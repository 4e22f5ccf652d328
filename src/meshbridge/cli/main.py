"""The ``meshbridge`` command: validate, render, and the PKI commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshbridge import __version__, plural
from meshbridge.cli import apply as apply_cmd
from meshbridge.cli import credentials as credential_cmd
from meshbridge.cli import graph as graph_cmd
from meshbridge.cli import pki as pki_cmd
from meshbridge.cli import placement as placement_cmd
from meshbridge.cli import remote as remote_cmd
from meshbridge.cli import secret_placement
from meshbridge.cli import server as server_cmd
from meshbridge.cli.common import (
    FilesOption,
    StateOption,
    err_console,
    errors_mapped,
    out_console,
    state_path,
)
from meshbridge.cli.helplayout import Command, Group
from meshbridge.cli.progress import shown
from meshbridge.usecases.sources import read_sources

app = typer.Typer(
    cls=Group,
    name="meshbridge",
    help="One Istio mesh across many Kubernetes clusters: write intents (which app runs where, "
    "who may call whom), get every cluster's Istio manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"meshbridge {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """One Istio mesh across many Kubernetes clusters."""


@app.command(cls=Command)
def validate(files: FilesOption) -> None:
    """Check intent documents without writing anything.

    Exit 0 when valid; otherwise exit 2 with one line per problem on stderr, naming the file,
    the document (kind/name) and the field path. A gateway address the intents leave out for a
    cluster with a kubeconfig is valid: `meshbridge apply` discovers it (render needs it given).
    """
    with errors_mapped(), shown(err_console) as progress:
        from meshbridge.compile.validate import to_discover
        from meshbridge.usecases import render as render_service

        checked = render_service.validate(read_sources(files), progress, before_apply=True)
    count = len(checked.intents.documents())
    out_console.print(f"valid: {plural.count(count, 'document')}", markup=False)
    later = to_discover(checked)
    if later:
        err_console.print(
            f"apply discovers the gateway address of {', '.join(later)} from the cluster "
            "(render needs spec.gateway.address)",
            markup=False,
        )


@app.command(cls=Command)
def render(
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="DIR",
            help="Directory to write, one folder per cluster, meant for Git: Secrets holding a "
            "private key are not written there (see --secrets-dir). It is replaced whole: "
            "nothing stale is left.",
            show_default=False,
        ),
    ],
    files: Annotated[
        list[str] | None,
        typer.Option(
            "-f",
            "--filename",
            metavar="FILE|DIR|-",
            show_default=False,
            help="Intent documents: a YAML file, a directory (the *.yaml / *.yml files directly "
            "in it; not its subdirectories) or - for standard input. Repeat for more. Required "
            "unless --server is given.",
        ),
    ] = None,
    secrets_dir: secret_placement.SecretsDirOption = None,
    include_secrets: secret_placement.IncludeSecretsOption = False,
    state: StateOption = None,
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Also list every cluster's object count.")
    ] = False,
    placement_file: Annotated[
        Path | None,
        typer.Option(
            "--placement",
            metavar="FILE",
            help="Where the Apps with discover: {} run: App documents with clusters (the "
            "output of meshbridge discover -o yaml). Default: the placement last recorded in "
            "the state store (by apply or a server).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write every cluster's Istio manifests (GitOps-ready YAML) to a directory.

    The Secrets that hold a private key (each cluster's cacerts, ingress credentials) are left
    out of it, since it is meant for Git: --secrets-dir DIR2 writes them to a separate 0600 tree,
    --include-secrets into the directory; apply sends them to clusters directly.

    VIPs and certificates are kept in the state store, so rendering the same intents again gives
    the same bytes, and VIPs never move when other intents are added or removed.
    """
    placement = secret_placement.placement(output, secrets_dir, include_secrets)
    if server:
        remote_cmd.render_remote(server, token, output, files, placement, server_ca)
        return
    with errors_mapped(), shown(err_console) as progress:
        from meshbridge.store import open_store
        from meshbridge.usecases import pki as pki_service
        from meshbridge.usecases import render as render_service

        checked = render_service.validate(read_sources(files or []), progress)
        store = open_store(state_path(state))
        try:
            pki_service.pair_key_file(state_path(state), store)  # kept if the render fails
            material = pki_service.material_provider(state_path(state))
            found = placement_cmd.render_placement(checked, store, placement_file)
            result, written = render_service.render(
                checked, output, store, material, placement, progress, found
            )
        finally:
            store.close()
    counts = dict(sorted(result.counts.items()))
    if verbose:
        for cluster, count in counts.items():
            out_console.print(f"{cluster}: {plural.count(count, 'object')}", markup=False)
    elif len(counts) > 1:  # a few lines whatever the number of clusters; -v lists them
        out_console.print(
            f"objects per cluster: {min(counts.values())} to {max(counts.values())}, "
            f"{sum(counts.values())} in all",
            markup=False,
        )
    summary = f"{plural.count(written.files, 'file')} for {plural.count(len(counts), 'cluster')}"
    if written.output in written.unchanged:  # already the render: nothing written or touched
        out_console.print(f"{output} already holds this render ({summary}): nothing written",
                          markup=False)
    else:
        out_console.print(
            f"wrote {summary} to {output}"
            + (f" ({plural.count(result.new_vips, 'new VIP')})" if result.new_vips else ""),
            markup=False,
        )
    secret_placement.report(written)
    if found is not None:
        from meshbridge.compile.placement import coverage

        placement_cmd.print_uncovered(coverage(result.blueprint.snapshot))


app.add_typer(pki_cmd.app)
app.command(cls=Command)(apply_cmd.apply)
app.command(cls=Command)(apply_cmd.diff)
app.command(cls=Command)(graph_cmd.graph)
app.command("status", cls=Command)(apply_cmd.status_cmd)
app.command(cls=Command)(placement_cmd.discover)
app.command(cls=Command)(placement_cmd.rbac)
app.command(cls=Command)(remote_cmd.get)
app.command(cls=Command)(remote_cmd.delete)
app.command(cls=Command)(server_cmd.serve)
app.add_typer(server_cmd.db_app)
app.add_typer(server_cmd.token_app)
app.add_typer(credential_cmd.app)


def main() -> None:
    """The console entry point: the command's exit code; a reader that went away early
    (``meshbridge get cluster | head -1``) is exit 1 without a traceback."""
    try:
        app()
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        code = code or 1
    sys.exit(code)
