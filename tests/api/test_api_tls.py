"""TLS at the server's boundary: a real `meshbridge serve` over https with certificates made
here, verified by clients (httpx and the CLI); client certificates; and plain HTTP refused at
start on an address other machines reach."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from apitest import LiveServer
from helpers import EXAMPLES
from pgcluster import free_port
from tlsfiles import TlsFiles, make_tls_files
from typer.testing import CliRunner

from meshbridge.cli import server as server_cmd
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store


@pytest.fixture
def backend() -> str:
    return "sqlite"  # TLS does not care which database the server has


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def editor(db_url: str) -> str:
    store = open_store(db_url)
    try:
        return create_token(store, "tls-editor", "editor")
    finally:
        store.close()


def _context(ca: Path, client: TlsFiles | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.client_cert), str(client.client_key))
    return context


def _cli(*args: str):
    from meshbridge.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_https_requests_work_and_are_verified(
    live: Callable[..., LiveServer], tls: TlsFiles, editor: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = live(None, "--no-pki", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
                  verify=_context(tls.ca))
    assert server.url.startswith("https://127.0.0.1:")
    headers = {"Authorization": f"Bearer {editor}"}
    ok = httpx.get(f"{server.url}/api/v1/clusters", headers=headers, verify=_context(tls.ca))
    assert ok.status_code == 200 and ok.json()["items"] == []

    # a client that does not trust the CA is stopped by the handshake, before any token goes
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/api/v1/clusters", headers=headers,
                  verify=_context(tls.other_ca))
    # nothing answers in clear text on the TLS port
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/readyz", timeout=5)

    # the CLI: --server-ca (or MESHBRIDGE_SERVER_CA) verifies the server
    monkeypatch.setenv("MESHBRIDGE_TOKEN", editor)
    monkeypatch.delenv("MESHBRIDGE_SERVER_CA", raising=False)
    applied = _cli("apply", "-f", str(EXAMPLES / "sleep-httpbin"), "--server", server.url,
                   "--server-ca", str(tls.ca))
    assert applied.exit_code == 0, applied.stderr
    assert "cluster cluster1 created" in applied.stdout
    monkeypatch.setenv("MESHBRIDGE_SERVER_CA", str(tls.ca))
    got = _cli("get", "clusters", "--server", server.url)
    assert got.exit_code == 0, got.stderr
    assert "cluster1" in got.stdout
    rendered = _cli("render", "-o", str(tmp_path / "out"), "--server", server.url)
    assert rendered.exit_code == 0, rendered.stderr
    assert (tmp_path / "out" / "cluster1").is_dir()

    # ... and refuses a server its CA did not sign (the system's trust, or another CA)
    monkeypatch.delenv("MESHBRIDGE_SERVER_CA")
    untrusted = _cli("get", "clusters", "--server", server.url)
    assert untrusted.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert "--server-ca or MESHBRIDGE_SERVER_CA names the CA that signed it" in untrusted.stderr
    other = _cli("get", "clusters", "--server", server.url, "--server-ca", str(tls.other_ca))
    assert other.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in other.stderr
    assert editor not in untrusted.stderr + other.stderr


def test_client_certificates_are_required_with_a_client_ca(
    live: Callable[..., LiveServer], tls: TlsFiles, editor: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = live(None, "--no-pki", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
                  "--tls-client-ca", str(tls.ca), verify=_context(tls.ca, tls))
    headers = {"Authorization": f"Bearer {editor}"}
    ok = httpx.get(f"{server.url}/api/v1/clusters", headers=headers,
                   verify=_context(tls.ca, tls))
    assert ok.status_code == 200
    with pytest.raises(httpx.HTTPError):  # no certificate: the handshake (or first read) fails
        httpx.get(f"{server.url}/healthz", verify=_context(tls.ca))

    monkeypatch.setenv("MESHBRIDGE_TOKEN", editor)
    monkeypatch.setenv("MESHBRIDGE_SERVER_CA", str(tls.ca))
    assert _cli("get", "clusters", "--server", server.url).exit_code == 1
    monkeypatch.setenv("MESHBRIDGE_CLIENT_CERT", str(tls.client_cert))
    monkeypatch.setenv("MESHBRIDGE_CLIENT_KEY", str(tls.client_key))
    got = _cli("get", "clusters", "--server", server.url)
    assert got.exit_code == 0, got.stderr


# ----------------------------------------------------------------------- refused at start


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """uvicorn.run recorded, not run: what serve would have bound, if it got that far."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    return calls


def _serve(tmp_path: Path, *args: str):
    db = tmp_path / "refused" / "server.db"
    result = CliRunner().invoke(
        server_cmd.server_app, ["serve", "--db", f"sqlite:///{db}", "--no-pki", *args],
        catch_exceptions=False,
    )
    return result, db


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "meshbridge.internal"])
def test_plain_http_off_loopback_is_refused_before_anything_starts(
    tmp_path: Path, no_uvicorn: list[dict], host: str
) -> None:
    result, db = _serve(tmp_path, "--host", host)
    assert result.exit_code == 2
    assert f"refusing to serve plain HTTP on {host}" in result.stderr
    assert "--tls-cert FILE --tls-key FILE" in result.stderr
    assert no_uvicorn == [], "it got as far as binding"
    assert not db.exists(), "it opened the store first"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_plain_http_on_loopback_is_served(
    tmp_path: Path, no_uvicorn: list[dict], host: str
) -> None:
    result, _ = _serve(tmp_path, "--host", host)
    assert result.exit_code == 0, result.stderr
    assert [(c["host"], c["ssl_certfile"]) for c in no_uvicorn] == [(host, None)]


def test_insecure_allows_plain_http_off_loopback(tmp_path: Path, no_uvicorn: list[dict]) -> None:
    result, _ = _serve(tmp_path, "--host", "0.0.0.0", "--insecure")
    assert result.exit_code == 0, result.stderr
    assert "listening on http://0.0.0.0:8080" in result.stderr
    assert [c["host"] for c in no_uvicorn] == ["0.0.0.0"]


def test_tls_off_loopback_is_served(tmp_path: Path, tls: TlsFiles, no_uvicorn: list[dict]) -> None:
    result, _ = _serve(tmp_path, "--host", "0.0.0.0", "--tls-cert", str(tls.cert),
                       "--tls-key", str(tls.key), "--tls-client-ca", str(tls.ca))
    assert result.exit_code == 0, result.stderr
    assert "listening on https://0.0.0.0:8080 (client certificates required)" in result.stderr
    (call,) = no_uvicorn
    assert (call["ssl_certfile"], call["ssl_keyfile"], call["ssl_ca_certs"]) == (
        tls.cert, tls.key, tls.ca)
    assert call["ssl_cert_reqs"] == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "KEY"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "CA"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "CERT", "--tls-key", "OTHER_KEY"], "cannot use --tls-cert"),
        (["--tls-cert", "MISSING", "--tls-key", "KEY"], "cannot use --tls-cert"),
        (["--tls-cert", "CERT", "--tls-key", "KEY", "--tls-client-ca", "MISSING"],
         "cannot use --tls-client-ca"),
    ],
)
def test_bad_tls_options_stop_the_start(
    tmp_path: Path, tls: TlsFiles, no_uvicorn: list[dict], args: list[str], message: str
) -> None:
    files = {"CERT": tls.cert, "KEY": tls.key, "CA": tls.ca, "OTHER_KEY": tls.client_key,
             "MISSING": tmp_path / "missing.pem"}
    result, db = _serve(tmp_path, "--host", "0.0.0.0", *[str(files.get(a, a)) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert no_uvicorn == [] and not db.exists()


def test_the_real_command_refuses_plain_http_on_a_public_address(tmp_path: Path) -> None:
    """`meshbridge serve --host 0.0.0.0` as a process: exit 2 at once, nothing listening."""
    port = free_port()
    db = tmp_path / "public.db"
    proc = subprocess.run(
        [sys.executable, "-m", "meshbridge.cli.server", "serve", "--host", "0.0.0.0",
         "--port", str(port), "--db", f"sqlite:///{db}", "--no-pki"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to serve plain HTTP on 0.0.0.0" in proc.stderr
    assert not db.exists()
