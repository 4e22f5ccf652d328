"""The ``meshbridge`` command: validate, render, and the PKI commands."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshbridge import __version__
from meshbridge.cli import apply as apply_cmd
from meshbridge.cli import credentials as credential_cmd
from meshbridge.cli import keys as keys_opt
from meshbridge.cli import pki as pki_cmd
from meshbridge.cli import remote as remote_cmd
from meshbridge.cli import server as server_cmd
from meshbridge.cli.common import (
    FilesOption,
    StateOption,
    err_console,
    errors_mapped,
    out_console,
    state_path,
)
from meshbridge.service.sources import read_sources
from meshbridge.store import open_store

app = typer.Typer(
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


@app.command()
def validate(files: FilesOption) -> None:
    """Check intent documents without writing anything.

    Exit 0 when valid; otherwise exit 2 with one line per problem on stderr, naming the file,
    the document (kind/name) and the field path.
    """
    with errors_mapped():
        from meshbridge.service import render as render_service

        checked = render_service.validate(read_sources(files))
    count = len(checked.intents.documents())
    err_console.print(f"valid: {count} document{'s' if count != 1 else ''}", markup=False)


@app.command()
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
            help="Intent documents: a YAML file, a directory (every *.yaml / *.yml in it) or - "
            "for standard input. Repeat for more. Required unless --server is given.",
        ),
    ] = None,
    secrets_dir: keys_opt.SecretsDirOption = None,
    include_secrets: keys_opt.IncludeSecretsOption = False,
    state: StateOption = None,
    server: remote_cmd.ServerOption = None,
    token: remote_cmd.TokenOption = None,
    server_ca: remote_cmd.ServerCAOption = None,
) -> None:
    """Write every cluster's Istio manifests (GitOps-ready YAML) to a directory.

    The Secrets that hold a private key (each cluster's cacerts, ingress credentials) are left
    out of it, since it is meant for Git: --secrets-dir DIR2 writes them to a separate 0600 tree,
    --include-secrets into the directory; apply sends them to clusters directly.

    VIPs and certificates are kept in the state store, so rendering the same intents again gives
    the same bytes, and VIPs never move when other intents are added or removed.
    """
    placement = keys_opt.placement(output, secrets_dir, include_secrets)
    if server:
        remote_cmd.render_remote(server, token, output, files, placement, server_ca)
        return
    with errors_mapped():
        from meshbridge.service import pki as pki_service
        from meshbridge.service import render as render_service

        checked = render_service.validate(read_sources(files or []))
        store = open_store(state_path(state))
        try:
            pki_service.pair_key_file(state_path(state), store)  # kept if the render fails
            material = pki_service.material_provider(state_path(state))
            result, written = render_service.render(
                checked, output, store, material, placement
            )
        finally:
            store.close()
    for cluster, objs in sorted(result.objects.items()):
        err_console.print(f"{cluster}: {len(objs)} objects", markup=False)
    err_console.print(
        f"wrote {written.files} files for {len(result.objects)} clusters to {output}"
        + (f" ({result.new_vips} new VIPs)" if result.new_vips else ""),
        markup=False,
    )
    keys_opt.report(written)


app.add_typer(pki_cmd.app)
app.command()(apply_cmd.apply)
app.command()(apply_cmd.diff)
app.command()(apply_cmd.status)
app.command()(remote_cmd.get)
app.command()(remote_cmd.delete)
app.command()(server_cmd.serve)
app.add_typer(server_cmd.db_app)
app.add_typer(server_cmd.token_app)
app.add_typer(credential_cmd.app)


def main() -> None:
    """The console entry point: runs the command, then ends the process without tearing the
    interpreter down.

    Every command closes what it opened (state store, output files, API clients) before it
    returns, so the interpreter's own shutdown would only free memory object by object: about
    0.2 s of a no-op ``apply``. The standard streams are flushed first; an unexpected error
    still propagates and exits the usual way, with its traceback.
    """
    # Everything imported so far lives until the process ends: keep the cyclic garbage
    # collector from walking it again on every full collection (measured: about half of the
    # render time of a no-op `apply` of a large mesh went to such collections).
    gc.freeze()
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    os._exit(_flushed(code))


def _exit_code(value: object) -> int:
    """What the interpreter would exit with for ``sys.exit(value)``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _flushed(code: int) -> int:
    """Flush the standard streams (and logging, when used); a reader that went away early
    (``meshbridge render | head``) is not an error worth a traceback."""
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            code = code or 1
    return code
