"""``meshbridge pki``: look at, hand out and rotate the mesh's certificates.

``render`` issues everything on first need; these commands are for the moments a person must
act: bring an enterprise CA, check expiry, export ``cacerts`` for a cluster managed by hand,
give an external caller a client certificate, rotate an intermediate or the root. Each command
is a thin shell over :mod:`meshbridge.usecases.pki`: parse, open the store, call one use case in
one transaction, print. Private keys are printed nowhere; only ``export`` and ``issue-client``
write them, to 0600 files. The service (with the models and X.509) is imported by the commands
that use it, not whenever the CLI starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from meshbridge import plural
from meshbridge.cli.common import StateOption, err_console, errors_mapped, out_console, state_path
from meshbridge.cli.helplayout import Command, Group
from meshbridge.keyfiles import make_key_dirs
from meshbridge.usecases.sources import read_sources

if TYPE_CHECKING:
    from rich.table import Table

    from meshbridge.model import Intents, Mesh
    from meshbridge.pki.chain import CertSummary
    from meshbridge.pki.inventory import PkiStatus
    from meshbridge.pki.sealing import Sealer
    from meshbridge.store import Store

app = typer.Typer(
    cls=Group,
    name="pki",
    help="The mesh PKI: one shared root, an intermediate CA per cluster (the cacerts Secret), "
    "ingress credentials for external hosts. Show, export, issue client certificates, rotate.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

MeshFilesOption = Annotated[
    list[str] | None,
    typer.Option(
        "-f",
        "--filename",
        metavar="FILE|DIR|-",
        help="Intent documents to take the Mesh CA settings (rootCA, intermediateCA) from. "
        "Without -f: the settings of the last render, else the defaults.",
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace what exists (see the command's help).")
]


def _now() -> datetime:
    return datetime.now(UTC)


def _intents(files: list[str] | None) -> Intents | None:
    from meshbridge.loading import load

    return load(read_sources(files)) if files else None


@contextmanager
def _session(
    state: str | None, files: list[str] | None = None, *, sealed: bool = True
) -> Iterator[tuple[Store, Sealer | None, Mesh]]:
    """Open the store, the sealer (when keys are needed) and the Mesh; one transaction."""
    from meshbridge.store import open_store
    from meshbridge.usecases import pki as service

    path = state_path(state)
    intents = _intents(files)
    store = open_store(path)
    try:
        sealer = service.load_sealer(path, store) if sealed else None
        with store.transaction():
            yield store, sealer, service.mesh_for(store, intents.mesh if intents else None)
    finally:
        store.close()


def _need(sealer: Sealer | None) -> Sealer:
    assert sealer is not None
    return sealer


def _write(path: Path, data: str, mode: int) -> None:
    """Write ``data`` to ``path`` with exactly ``mode`` (also when the file already existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data.encode("ascii"))
    finally:
        os.close(fd)


def _out_dir(path: Path) -> Path:
    try:
        make_key_dirs(path)
    except OSError as exc:
        err_console.print(f"error: cannot create {path}: {exc.strerror}", style="red", markup=False)
        raise typer.Exit(1) from None
    return path


def _done(message: str) -> None:
    """What a command did: its result, so stdout (as kubectl prints "secret/x created")."""
    out_console.print(message, markup=False)


def _lead_in(message: str) -> None:
    """The words before a command printed for the user to run: stderr, so that stdout holds
    the command alone (``$(meshbridge pki export --root ...)`` is the import command)."""
    err_console.print(message, markup=False)


def _cert_line(summary: CertSummary) -> str:
    return (
        f"{summary.role} {summary.name}: {summary.subject}, SHA-256 {summary.fingerprint[:16]}…, "
        f"valid until {summary.not_after:%Y-%m-%d}"
    )


# ----------------------------------------------------------------------------------- roots


@app.command("init", cls=Command)
def init_cmd(
    files: MeshFilesOption = None,
    state: StateOption = None,
    force: ForceOption = False,
) -> None:
    """Create the mesh root CA from Mesh.spec.rootCA (render does this on first need too).

    Refuses when a root exists. With --force the root is replaced and every cluster's
    intermediate is re-issued on the next render: clusters distrust each other until all have the
    new cacerts (apply writes it only with --replace-root). To change a root without an outage
    use 'pki rotate-root'.
    """
    from meshbridge.usecases import pki as service

    with errors_mapped(), _session(state, files) as (store, sealer, mesh):
        summary = service.init_root(store, _need(sealer), mesh, _now(), force=force)
    _done(f"created {_cert_line(summary)}")


@app.command("import", cls=Command)
def import_cmd(
    cert: Annotated[
        Path,
        typer.Option(
            "--cert",
            metavar="FILE",
            help="PEM certificate of the CA to sign intermediates with (with --cluster: the "
            "cluster's ca-cert.pem).",
        ),
    ],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="FILE",
            help="Its unencrypted PEM private key (with --cluster: its ca-key.pem).",
        ),
    ] = None,
    chain: Annotated[
        Path | None,
        typer.Option(
            "--chain",
            metavar="FILE",
            help="For a CA issued by your enterprise CA: the PEM chain from its issuer up to and "
            "including the enterprise root. Omit for a self-signed root.",
        ),
    ] = None,
    without_key: Annotated[
        bool,
        typer.Option(
            "--without-key",
            help="Keep the root without its key (the key is lost): trusted, it signs nothing. "
            "Take each cluster's intermediate back with --cluster, then move to a new root "
            "with 'pki rotate-root'.",
        ),
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Import this cluster's intermediate CA instead, as its live cacerts holds it "
            "(ca-cert.pem, ca-key.pem); it must be issued by the mesh's root.",
        ),
    ] = None,
    state: StateOption = None,
    force: ForceOption = False,
) -> None:
    """Bring your own root (cert + key), or an intermediate issued by your enterprise CA; or
    bring a lost store's root and clusters' intermediates back (docs/pki.md, "Recovering a
    lost store").

    The CA is checked before anything is stored: the key matches, it may sign CAs (pathlen),
    the chain links to a self-signed root, it is within its validity. Refuses when the mesh has a
    root unless --force (see 'pki init'); with --cluster, when the cluster has an intermediate.
    """
    from meshbridge.usecases import pki as service

    if cluster is not None and (chain is not None or without_key):
        _bad_input("--cluster takes --cert and --key only")
    if (key is None) != without_key:
        _bad_input("give --key, or --without-key for a root whose key is lost")
    with errors_mapped():
        blobs = _read_files(cert, key, chain)
        with _session(state) as (store, sealer, _mesh):
            if cluster is not None:
                assert blobs[1] is not None
                summary = service.import_intermediate(
                    store, _need(sealer), cluster, blobs[0], blobs[1], _now(), force=force
                )
            else:
                summary = service.import_root(store, _need(sealer), *blobs, _now(), force=force)
    note = " (without its key: it signs nothing)" if without_key else ""
    _done(f"imported {_cert_line(summary)}{note}")


def _read_files(
    cert: Path, key: Path | None, chain: Path | None
) -> tuple[bytes, bytes | None, bytes | None]:
    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.expanduser().read_bytes()
        except OSError as exc:
            _bad_input(f"cannot read {path}: {exc.strerror}")

    data = read(cert)
    assert data is not None
    return data, read(key), read(chain)


# ---------------------------------------------------------------------------------- status


_HEALTH_STYLE = {  # by Health value
    "ok": "green",
    "expiring": "yellow",
    "expired": "red",
    "not yet valid": "yellow",
}


def _table(report: PkiStatus) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"mesh PKI — root rotation: {report.phase_text}", title_justify="left")
    table.add_column("role", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("expires", no_wrap=True)
    table.add_column("days", justify="right")
    table.add_column("health", no_wrap=True)
    table.add_column("subject, SHA-256, note", overflow="fold", min_width=24)
    for entry in report.entries:
        c = entry.cert
        details = f"{c.subject}\nsha256:{c.fingerprint[:32]}"
        if entry.note:
            details += f"\n{entry.note}"
        table.add_row(
            c.role,
            c.name,
            f"{c.not_after:%Y-%m-%d}",
            str(c.days_left),
            f"[{_HEALTH_STYLE[c.health.value]}]{c.health.value}[/]",
            escape(details),
        )
    return table


def _as_json(report: PkiStatus) -> str:
    body = {
        "rotationPhase": report.phase,
        "rotation": report.phase_text,
        "certificates": [
            {
                "role": e.cert.role,
                "name": e.cert.name,
                "subject": e.cert.subject,
                "issuer": e.cert.issuer,
                "sha256": e.cert.fingerprint,
                "notBefore": e.cert.not_before.isoformat(),
                "notAfter": e.cert.not_after.isoformat(),
                "daysLeft": e.cert.days_left,
                "health": e.cert.health.value,
                "deployed": e.deployed,
                "note": e.note,
            }
            for e in report.entries
        ],
    }
    return json.dumps(body, indent=2)


def _report(state: str | None, as_json: bool) -> None:
    from meshbridge.usecases import pki as service

    path = state_path(state)
    if "://" not in path and not Path(path).expanduser().exists():
        err_console.print(f"no state store at {path} yet: nothing has been issued", markup=False)
        return
    with errors_mapped(), _session(state, sealed=False) as (store, _sealer, _mesh):
        report = service.pki_status(store, _now())
    if as_json:
        out_console.print(_as_json(report), markup=False)
    else:
        out_console.print(_table(report))
    for entry in report.entries:
        c = entry.cert
        if c.health.value == "expiring":
            err_console.print(
                f"warning: {c.role} {c.name} expires in {plural.count(c.days_left, 'day')}",
                style="yellow",
                markup=False,
            )
        elif c.health.value == "expired":
            level, style = ("error", "red") if entry.deployed else ("note", "yellow")
            err_console.print(f"{level}: {c.role} {c.name} has expired", style=style, markup=False)
    if report.expired:
        raise typer.Exit(1)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("status", cls=Command)
def status_cmd(state: StateOption = None, as_json: JsonOption = False) -> None:
    """Every certificate of the mesh: subject, fingerprint, expiry, and the rotation phase.

    Warns about anything expiring within 30 days; exits 1 when a CA or a deployed certificate has
    expired (an expired client certificate handed out is only noted). Reads only public
    certificates: it works without the state key.
    """
    _report(state, as_json)


@app.command("show", cls=Command)
def show_cmd(
    state: StateOption = None,
    as_json: JsonOption = False,
    root: Annotated[
        bool,
        typer.Option("--root", help="Print the trusted root bundle (root-cert.pem) as PEM."),
    ] = False,
    ingress_ca: Annotated[
        bool,
        typer.Option(
            "--ingress-ca",
            help="Print, as PEM, the CA that signs every ingress server certificate: what "
            "external callers must trust (curl --cacert).",
        ),
    ] = False,
) -> None:
    """Like 'status'; with --root or --ingress-ca, print that public certificate as PEM."""
    from meshbridge.usecases import pki as service

    if not (root or ingress_ca):
        _report(state, as_json)
        return
    with errors_mapped(), _session(state, sealed=False) as (store, _sealer, _mesh):
        pem = service.root_bundle_pem(store) if root else ""
        pem += service.ingress_server_ca_pem(store) if ingress_ca else ""
    out_console.print(pem, markup=False, end="")


# -------------------------------------------------------------------------------- hand-outs


MAX_CN = 64
CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


@app.command("export", cls=Command)
def export_cmd(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Directory to write the files to (mode 0600)."),
    ],
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="The cluster whose cacerts to write."),
    ] = None,
    root: Annotated[
        bool,
        typer.Option(
            "--root",
            help="Write the mesh's root CA instead (root-ca.pem, its key root-ca.key, and "
            "root-ca-chain.pem for an enterprise-issued CA): a backup to keep offline, what "
            "'pki import' brings back into a new store.",
        ),
    ] = False,
    files: MeshFilesOption = None,
    state: StateOption = None,
) -> None:
    """Write a cluster's cacerts files (ca-cert, ca-key, root-cert, cert-chain .pem), or the
    root CA with its key (--root).

    For clusters set up by hand: kubectl create secret generic cacerts -n istio-system
    --from-file=DIR/ca-cert.pem ... A cluster without an intermediate yet gets one when -f
    declares it (a Cluster document); otherwise render first.
    """
    from meshbridge.usecases import pki as service

    if (cluster is None) == (not root):
        _bad_input("give exactly one of --cluster and --root")
    if cluster is None:
        _export_root(directory, state)
        return
    with errors_mapped():
        declared = _declared_clusters(files)
        if declared is not None and cluster not in declared:
            _bad_input(f"cluster {cluster} is not declared (clusters: {', '.join(declared)})")
        with _session(state, files) as (store, sealer, mesh):
            ca = service.export_cacerts(
                store, _need(sealer), mesh, cluster, _now(), issue=declared is not None
            )
            out = _out_dir(directory)
            contents = (ca.ca_cert, ca.ca_key, ca.root_cert, ca.cert_chain)
            for name, data in zip(CACERTS_FILES, contents, strict=True):
                _write(out / name, data, 0o600)
    args = " ".join(f"--from-file={out / name}" for name in CACERTS_FILES)
    _lead_in(f"wrote {', '.join(CACERTS_FILES)} to {out} (mode 0600); apply with:")
    out_console.print(f"kubectl create secret generic cacerts -n istio-system {args}", markup=False)


def _export_root(directory: Path, state: str | None) -> None:
    from meshbridge.usecases import pki as service

    with errors_mapped(), _session(state) as (store, sealer, _mesh):
        cert, key, chain = service.export_root(store, _need(sealer))
        out = _out_dir(directory)
        written = {"root-ca.pem": cert, "root-ca.key": key}
        if chain:
            written["root-ca-chain.pem"] = chain
        for name, data in written.items():
            _write(out / name, data, 0o600)
    again = f"--cert {out / 'root-ca.pem'} --key {out / 'root-ca.key'}"
    if chain:
        again += f" --chain {out / 'root-ca-chain.pem'}"
    _lead_in(
        f"wrote {', '.join(written)} to {out} (mode 0600); keep them offline, apart from the "
        "state store. Into a new store they go back with:"
    )
    out_console.print(f"meshbridge pki import {again}", markup=False)


def _declared_clusters(files: list[str] | None) -> list[str] | None:
    intents = _intents(files)
    return None if intents is None else sorted(c.obj.name for c in intents.clusters)


def _bad_input(message: str) -> NoReturn:
    err_console.print(f"error: {message}", style="red", markup=False)
    raise typer.Exit(2)


def _check_mutual_host(files: list[str] | None, host: str) -> None:
    intents = _intents(files)
    if intents is None:
        return
    hosts = {
        i.obj.spec.external.host: i.obj.spec.external.tls_mode
        for i in intents.inbound
        if i.obj.spec.external is not None
    }
    if hosts.get(host) != "MUTUAL":
        found = ", ".join(sorted(h for h, m in hosts.items() if m == "MUTUAL")) or "none"
        _bad_input(f"{host} is not the host of an external MUTUAL intent (MUTUAL hosts: {found})")


def _check_names(host: str, cn: str) -> None:
    from pydantic import ValidationError

    from meshbridge.model import ExternalAccess

    try:
        ExternalAccess.model_validate({"host": host})
    except ValidationError:
        _bad_input(f"--host {host!r} is not a DNS name (lower-case, no wildcard)")
    if not 1 <= len(cn) <= MAX_CN:
        _bad_input(f"--cn must be 1 to {MAX_CN} characters long")


@app.command("issue-client", cls=Command)
def issue_client_cmd(
    host: Annotated[str, typer.Option("--host", help="The external host the caller will reach.")],
    cn: Annotated[str, typer.Option("--cn", help="The caller's name (certificate CN).")],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="Directory for client.crt, client.key (0600) and ca.crt."),
    ],
    days: Annotated[
        int,
        typer.Option("--days", min=1, max=3650, help="Validity of the certificate in days."),
    ] = 365,
    files: MeshFilesOption = None,
    state: StateOption = None,
    force: ForceOption = False,
) -> None:
    """A client certificate for an external caller of a MUTUAL host.

    Signed by the host's ingress client CA (the ca.crt of its gateway credential; never the
    mesh root). Writes client.crt, client.key (mode 0600) and ca.crt, the CA that signs the
    ingress server certificates, for the caller to verify the server. With -f, HOST must be the
    host of an external MUTUAL intent. Refuses to overwrite client.key unless --force.
    """
    from meshbridge.usecases import pki as service

    with errors_mapped():
        _check_names(host, cn)
        _check_mutual_host(files, host)
        if (out / "client.key").exists() and not force:
            err_console.print(
                f"error: {out / 'client.key'} exists; pass --force to overwrite it",
                style="red",
                markup=False,
            )
            raise typer.Exit(1)
        with _session(state, files) as (store, sealer, mesh):
            bundle = service.issue_client_cert(store, _need(sealer), mesh, host, cn, _now(), days)
            target = _out_dir(out)
            _write(target / "client.crt", bundle.cert, 0o644)
            _write(target / "client.key", bundle.key, 0o600)
            _write(target / "ca.crt", bundle.server_ca, 0o644)
    _lead_in(f"issued {_cert_line(bundle.summary)}")
    _lead_in(f"wrote client.crt, client.key (0600) and ca.crt (ingress server CA) to {target}; try:")
    out_console.print(
        f"curl --cacert {target / 'ca.crt'} --cert {target / 'client.crt'} "
        f"--key {target / 'client.key'} https://{host}/",
        markup=False,
    )


# -------------------------------------------------------------------------------- rotation


@app.command("rotate", cls=Command)
def rotate_cmd(
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="Re-issue this cluster's intermediate CA (same root)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Re-issue this external host's ingress server certificate.",
        ),
    ] = None,
    client_ca: Annotated[
        bool,
        typer.Option(
            "--client-ca",
            help="With --host: replace the host's ingress client CA instead; every client "
            "certificate issued for the host stops working.",
        ),
    ] = False,
    files: MeshFilesOption = None,
    state: StateOption = None,
) -> None:
    """Re-issue one cluster's intermediate CA, or one host's ingress certificate.

    The root is unchanged, so other clusters keep trusting the cluster. Render and apply
    afterwards; istiod picks up the new cacerts on restart. To replace the root, use
    'pki rotate-root'.
    """
    from meshbridge.usecases import pki as service

    if (cluster is None) == (host is None) or (client_ca and host is None):
        _bad_input("give exactly one of --cluster and --host (--client-ca goes with --host)")
    with errors_mapped(), _session(state, files) as (store, sealer, mesh):
        now = _now()
        if cluster is not None:
            summary = service.rotate_intermediate(store, _need(sealer), mesh, cluster, now)
        elif client_ca:
            summary = service.rotate_client_ca(store, _need(sealer), mesh, str(host), now)
        else:
            summary = service.rotate_server(store, _need(sealer), mesh, str(host), now)
    _done(f"re-issued {_cert_line(summary)}; render and apply to roll it out")


def _observe_istiods(state: str | None, files: list[str]) -> None:
    """What the intents' clusters' istiod publish now, kept for the rotation's checks."""
    from meshbridge.kube import ReconcileOptions
    from meshbridge.store import open_store
    from meshbridge.usecases import rootguard

    intents = _intents(files)
    assert intents is not None
    store = open_store(state_path(state))
    try:
        unread = rootguard.observe(store, intents, ReconcileOptions(retries=1))
    finally:
        store.close()
    for line in unread:
        err_console.print(f"warning: istiod not read: {line}", style="yellow", markup=False)


class Phase(StrEnum):
    BEGIN = "begin"
    ADVANCE = "advance"
    FINISH = "finish"
    ABORT = "abort"


_NEXT_STEP = {
    1: "render and apply every cluster (root-cert.pem now carries both roots); once every "
    "istiod publishes both roots and workload certificates have renewed, run "
    "'pki rotate-root advance -f INTENTS'",
    2: "render and apply every cluster (new intermediates, both roots trusted); once all "
    "workloads have renewed their certificates, run 'pki rotate-root finish -f INTENTS'",
    0: "render and apply every cluster: root-cert.pem now carries only the new root",  # finish
}


@app.command("rotate-root", cls=Command)
def rotate_root_cmd(
    phase: Annotated[
        Phase,
        typer.Argument(
            help="begin: new root, trusted beside the old one (phase 1). advance: intermediates "
            "re-issued under the new root (phase 2). finish: old root dropped (phase 3). "
            "abort: undo phase 1."
        ),
    ],
    cert: Annotated[
        Path | None,
        typer.Option("--cert", metavar="FILE", help="begin only: import this CA as the new root."),
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", metavar="FILE", help="begin only: its private key.")] = None,
    chain: Annotated[
        Path | None,
        typer.Option("--chain", metavar="FILE", help="begin only: its chain up to your root."),
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "-f",
            "--filename",
            metavar="FILE|DIR|-",
            help="The intents you apply: their Mesh's CA settings and workload certificate "
            "lifetime; with advance and finish, their Clusters are read too (the roots each "
            "istiod publishes now). Without -f: the settings of the last render, and what "
            "apply last saw.",
            show_default=False,
        ),
    ] = None,
    state: StateOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="advance/finish without the checks: for cacerts rolled out another way "
            "(GitOps, export), an istiod meshbridge cannot read, or workloads you know have "
            "all restarted since the phase reached their istiod.",
        ),
    ] = False,
) -> None:
    """Replace the mesh root in three phases, so no cluster ever distrusts another mid-way.

    Apply every cluster's rendered cacerts after each phase before starting the next one.
    advance and finish refuse, naming the clusters and what to wait for, until every cluster
    (every cluster with an intermediate CA in the store) is recorded by apply as holding the
    current phase's cacerts, its istiod is seen publishing the phase's roots, and a workload
    certificate lifetime has passed since (workloads renew within it): since istiod first
    published them for advance, since apply wrote phase 2's cacerts (plus 2 minutes for the
    kubelet) for finish. A new root issued by 'begin' gets a subject of its own (OU=generation
    N) when rootCA would repeat the current root's. 'pki status' shows the phase.
    """
    from meshbridge.usecases import pki as service

    if (cert is None) != (key is None) or (cert is not None and phase is not Phase.BEGIN):
        _bad_input("--cert and --key go together, and only with 'begin'")
    if force and phase not in (Phase.ADVANCE, Phase.FINISH):
        _bad_input("--force goes with 'advance' and 'finish'")
    with errors_mapped():
        imported = _read_files(cert, key, chain) if cert and key else None
        if files and phase in (Phase.ADVANCE, Phase.FINISH) and not force:
            _observe_istiods(state, files)
        with _session(state, files) as (store, sealer, mesh):
            if phase is Phase.BEGIN:
                trust = service.rotate_root_begin(store, _need(sealer), mesh, _now(), imported)
            elif phase is Phase.ADVANCE:
                trust = service.rotate_root_advance(store, _need(sealer), mesh, _now(), force=force)
            elif phase is Phase.FINISH:
                trust = service.rotate_root_finish(store, mesh, _now(), force=force)
            else:
                trust = service.rotate_root_abort(store)
    if phase is Phase.ABORT:
        _done(
            f"root rotation aborted: root-cert.pem now carries only the current root "
            f"{trust.active} again, and the new root is forgotten; next: render and apply every "
            "cluster (those that got phase 1's cacerts still trust the forgotten root until then)"
        )
        return
    label = "phase 3 done: old root dropped" if phase is Phase.FINISH else f"phase {trust.phase}"
    _done(f"root rotation: {label}; next: {_NEXT_STEP[trust.phase]}")
