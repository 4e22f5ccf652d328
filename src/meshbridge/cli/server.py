"""Commands of the meshbridge server: ``serve``, ``db upgrade``, ``token create|list|revoke``.

The store is ``--db URL`` (or ``MESHBRIDGE_DB``): ``sqlite:///PATH`` or
``postgresql://USER@HOST:PORT/DB``; by default a SQLite file in the user's data directory
(``$XDG_DATA_HOME/meshbridge/meshbridge.db``). Prefer the environment variable for a URL with a
password: a command line is visible to other users. Migrations run on every open, so ``serve``
and ``token`` work on a fresh database; ``db upgrade`` runs them on their own (e.g. before
rolling out several server processes).

``serve`` speaks HTTPS with ``--tls-cert/--tls-key`` (and asks every client for a certificate
with ``--tls-client-ca``); it refuses to listen in plain HTTP on an address other machines
reach unless ``--insecure`` is given.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from meshbridge.cli.common import err_console, errors_mapped, out_console
from meshbridge.cli.helplayout import Command, Group
from meshbridge.server.roles import ROLES

__all__ = ["db_app", "default_db", "serve", "server_app", "token_app"]


def default_db() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'meshbridge' / 'meshbridge.db'}"


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        envvar="MESHBRIDGE_DB",
        show_envvar=True,
        help="The server's store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        "(default: $XDG_DATA_HOME/meshbridge/meshbridge.db).",
        show_default=False,
    ),
]


def _db(option: str | None) -> str:
    return option or default_db()


def _shown(url: str) -> str:
    """A store URL fit for a log line: the password, if any, is hidden."""
    from sqlalchemy.engine import make_url

    from meshbridge.store import store_url

    try:
        return make_url(store_url(url)).render_as_string(hide_password=True)
    except Exception:
        return "<store>"


@dataclass(frozen=True)
class Tls:
    """The server's TLS files, checked to load before anything else starts."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def _usage(message: str) -> typer.Exit:
    err_console.print(f"error: {message}", style="red", markup=False)
    return typer.Exit(2)


def _tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> Tls | None:
    """The TLS files given, loaded once to fail now with a clear message (exit 2)."""
    if cert is None and key is None:
        if client_ca is not None:
            raise _usage("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise _usage("--tls-cert and --tls-key go together: give both")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise _usage(f"cannot use --tls-cert {cert} with --tls-key {key}: {reason}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise _usage(f"cannot use --tls-client-ca {client_ca}: {reason}") from None
    return Tls(cert, key, client_ca)


def check_listener(host: str, tls: Tls | None, insecure: bool) -> None:
    """Exit 2, before anything is opened or bound, for plain HTTP on an address other machines
    reach: bearer tokens and manifests holding CA keys would cross the network in clear text.
    ``--insecure`` allows it (TLS ended by a proxy on the same host, a test network)."""
    from meshbridge.loopback import is_loopback

    if tls is None and not insecure and not is_loopback(host):
        raise _usage(
            f"refusing to serve plain HTTP on {host}, an address other machines reach: tokens "
            "and manifests holding CA keys would cross the network in clear text. Give "
            "--tls-cert FILE --tls-key FILE, listen on a loopback address (127.0.0.1), or pass "
            "--insecure if TLS is ended in front of the server"
        )


def serve(
    db: DbOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Any but a loopback address needs --tls-cert/--tls-key "
            "(or --insecure).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")
    ] = 8080,
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="Serve /metrics without a token.")
    ] = False,
    max_body_mib: Annotated[
        int, typer.Option("--max-body-mib", metavar="MIB", min=1, max=1024, help="Largest request body.")
    ] = 8,
    header_timeout: Annotated[
        float,
        typer.Option(
            "--header-timeout",
            metavar="SECONDS",
            min=0.1,
            max=3600,
            help="Close a connection that sends no complete request head within this time "
            "(after connecting, or after its last answer).",
        ),
    ] = 10.0,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="uvicorn's log level.")] = "info",
    pki: Annotated[
        bool,
        typer.Option(
            "--pki/--no-pki",
            help="Render certificate material (cacerts, ingress credentials) like `render` does; "
            "needs the state key (MESHBRIDGE_STATE_KEY, or <file>.key beside a SQLite store).",
        ),
    ] = True,
    reconcile_interval: Annotated[
        float,
        typer.Option(
            "--reconcile-interval",
            metavar="SECONDS",
            min=0,
            help="Reconcile the stored mesh with every cluster that has spec.kubeconfig, after "
            "each change and at least every this many seconds; 0 turns the reconciler off.",
        ),
    ] = 60.0,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            min=3,
            max=600,
            help="Replicas: a cluster's lease lasts this long after its last renewal; a replica "
            "that dies leaves its clusters to another within about this time.",
        ),
    ] = 15.0,
    replica_id: Annotated[
        str | None,
        typer.Option(
            "--replica-id",
            metavar="NAME",
            help="This replica's name in leases and reconcile records (default: host:pid).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            help="Serve HTTPS with this certificate (PEM, the chain after the leaf).",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key", metavar="FILE", help="The certificate's private key (PEM).",
            show_default=False,
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            metavar="FILE",
            help="Also require a client certificate signed by this CA (PEM) on every "
            "connection, before any token is read.",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow plain HTTP on an address that is not loopback (TLS ended in front of "
            "the server).",
        ),
    ] = False,
) -> None:
    """Serve the REST API (documents, apply, rendered manifests, status, audit, metrics).

    Several server processes (replicas) may share one PostgreSQL database: writes are
    serialised there, each process notices the others' writes, and each cluster is reconciled
    by one replica at a time (docs/server.md, "Several replicas"). Off a loopback address it
    speaks HTTPS only (--tls-cert/--tls-key), unless --insecure is given.
    """
    tls = _tls(tls_cert, tls_key, tls_client_ca)
    check_listener(host, tls, insecure)

    import ssl

    import uvicorn

    from meshbridge.api import create_app
    from meshbridge.api.transport import KEEP_ALIVE, head_timeout_protocol
    from meshbridge.store import open_store
    from meshbridge.usecases.statekey import load_sealer

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = _db(db)
    material = None
    with errors_mapped():
        store = open_store(url)
        if pki:
            load_sealer(url, store)  # fail now, not on the first request, without the key
            from meshbridge.usecases.pki import material_provider, refuse_lost_store

            refuse_lost_store(url, store)  # nor beside the key file of a lost database

            material = material_provider(url)
    from meshbridge.server.credentials import Credentials

    app = create_app(
        store,
        material,
        max_body=max_body_mib * 1024 * 1024,
        metrics_public=public_metrics,
        reconcile_interval=reconcile_interval,
        # the state key is asked for when a credential is first registered or used
        credentials=Credentials(store, lambda: load_sealer(url, store)),
        replica=replica_id,
        lease_ttl=lease_seconds,
    )
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    err_console.print(
        f"meshbridge: store {_shown(url)}; listening on {scheme}://{shown_host}:{port}"
        + (" (client certificates required)" if tls and tls.client_ca else ""),
        markup=False,
    )
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            http=head_timeout_protocol(header_timeout),
            timeout_keep_alive=KEEP_ALIVE,
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
            ssl_ca_certs=tls.client_ca if tls else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca else ssl.CERT_NONE,
        )
    finally:
        store.close()


db_app = typer.Typer(cls=Group, name="db", help="The server's database.", no_args_is_help=True)


@db_app.command("upgrade", cls=Command)
def db_upgrade(db: DbOption = None) -> None:
    """Apply every pending schema migration (done on every open as well)."""
    from meshbridge.store.sql import upgrade_store

    with errors_mapped():
        done = upgrade_store(_db(db))
    if done.before == done.after:
        out_console.print(f"store already at schema revision {done.after}", markup=False)
    else:
        out_console.print(
            f"store upgraded from schema revision {done.before or 'none'} to {done.after}",
            markup=False,
        )


token_app = typer.Typer(cls=Group, name="token", help="API tokens of the server.", no_args_is_help=True)


@token_app.command("create", cls=Command)
def token_create(
    name: Annotated[str, typer.Option("--name", help="Who or what will use it (audit log).")],
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.")] = "viewer",
    db: DbOption = None,
) -> None:
    """Create a token and print it, once: it is stored only as a hash."""
    from meshbridge.server.tokens import create_token
    from meshbridge.store import open_store

    with errors_mapped():
        store = open_store(_db(db))
        try:
            token = create_token(store, name, role, actor="cli")
        finally:
            store.close()
    out_console.print(token, markup=False, highlight=False)
    err_console.print(f"token {name!r} ({role}) created: it is shown this once", markup=False)


@token_app.command("list", cls=Command)
def token_list(db: DbOption = None) -> None:
    """List tokens: name, role, created, revoked (never the token)."""
    from meshbridge.server.tokens import list_tokens
    from meshbridge.store import open_store

    with errors_mapped():
        store = open_store(_db(db))
        try:
            tokens = list_tokens(store)
        finally:
            store.close()
    rows = [("NAME", "ROLE", "CREATED", "STATE")] + [
        (t["name"], t["role"], t["created"], f"revoked {t['revoked']}" if t["revoked"] else "live")
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        out_console.print(line, markup=False, highlight=False)


@token_app.command("revoke", cls=Command)
def token_revoke(
    name: Annotated[str, typer.Option("--name", help="The token's name.")],
    db: DbOption = None,
) -> None:
    """Revoke a token: it stops working at once, on every server process."""
    from meshbridge.server.tokens import revoke_token
    from meshbridge.store import open_store

    with errors_mapped():
        store = open_store(_db(db))
        try:
            revoke_token(store, name, actor="cli")
        finally:
            store.close()
    out_console.print(f"token {name!r} revoked", markup=False)


server_app = typer.Typer(
    cls=Group,
    name="meshbridge-server",
    help="The meshbridge server's commands (also registered on `meshbridge`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
server_app.command(cls=Command)(serve)
server_app.add_typer(db_app)
server_app.add_typer(token_app)

if __name__ == "__main__":  # `python -m meshbridge.cli.server serve ...`
    server_app()
