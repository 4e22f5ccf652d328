"""The mesh lab's two ends, stub workload and requester, against each other on loopback.

Every lab check reads its verdict from what ``programs.client`` prints about what ``programs.stub``
answered, so a wrong field here (a peer taken from the wrong XFCC element, a Host header that
follows ``--connect``, a TCP client left waiting) would make lab checks pass or fail for the wrong
reason. Both run as subprocesses, as the lab runs them; small in-test servers stand in where the
test must see the client's side of the wire (SNI, client certificate, one connection per request).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshbridge_dev.lab.programs.stub import peer_from_xfcc, status_for

LOOPBACK = "127.0.0.1"
SERVER_NAME = "httpbin.lab.test"
START_TIMEOUT = 10.0
RUN_TIMEOUT = 30.0
XFCC_ONE = (
    'By=spiffe://cluster.local/ns/bar/sa/httpbin;Hash=abc;Subject="";'
    "URI=spiffe://cluster.local/ns/foo/sa/sleep"
)
XFCC_TWO = (
    "By=spiffe://cluster.local/ns/gw/sa/ingress;Hash=1;URI=spiffe://cluster.local/ns/x/sa/outer,"
    'By=spiffe://cluster.local/ns/bar/sa/httpbin;Hash=2;Subject="CN=a,O=b;c";'
    "URI=spiffe://cluster.local/ns/foo/sa/sleep"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    dns: str | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for SERVER_NAME and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab test CA")])
    ca = _issue("lab test CA", ca_key, ca_name, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    for who, dns, usage in (
        ("server", SERVER_NAME, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", None, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"lab {who}", key, ca_name, ca_key, dns=dns, usage=usage)
        (root / f"{who}.pem").write_bytes(cert.public_bytes(pem))
        _write_key(root / f"{who}-key.pem", key)
    return Pki(
        root / "ca.pem",
        root / "server.pem",
        root / "server-key.pem",
        root / "client.pem",
        root / "client-key.pem",
    )


# ------------------------------------------------------------------------------ stub and client


@dataclass(frozen=True)
class Stub:
    process: subprocess.Popen[bytes]
    port: int
    other_port: int
    tls_port: int
    log: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"the stub exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the stub did not listen on {port} in {START_TIMEOUT}s:\n{log.read_text()}"
                )
            time.sleep(0.02)


@contextlib.contextmanager
def run_stub(directory: Path, pki: Pki) -> Iterator[Stub]:
    port, other_port, tls_port = free_port(), free_port(), free_port()
    log = directory / "stub.log"
    command = [
        sys.executable, "-m", "meshbridge_dev.lab.programs.stub",
        "--cluster", "c1", "--namespace", "foo", "--app", "httpbin", "--bind", LOOPBACK, "--port", str(port), "--port", str(other_port),
        "--tls-port", str(tls_port), "--cert", str(pki.server_cert), "--key", str(pki.server_key),
    ]  # fmt: skip
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        for each in (port, other_port, tls_port):
            wait_for_port(each, process, log)
        yield Stub(process, port, other_port, tls_port, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Stub]:
    with run_stub(tmp_path_factory.mktemp("stub"), pki) as running:
        yield running
    # every test's odd client (bad TLS, stray bytes, early close) must leave no traceback behind
    assert running.process.returncode == 0
    assert "Traceback" not in running.log.read_text()


def client(*args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run ``lab.client ARGS``: exit code and the JSON objects it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "meshbridge_dev.lab.programs.client", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


# ------------------------------------------------------------------------------ HTTP/1


def test_get_answers_with_who_answered_and_what_arrived(stub: Stub) -> None:
    code, lines = client(f"http://{LOOPBACK}:{stub.port}/hello?x=1")
    assert code == 0
    assert lines == [
        {
            "cluster": "c1",
            "namespace": "foo",
            "app": "httpbin",
            "method": "GET",
            "path": "/hello?x=1",
            "peer": None,
            "host": f"{LOOPBACK}:{stub.port}",
            "status": 200,
        }
    ]


def test_post_and_every_port_answer(stub: Stub) -> None:
    code, lines = client("--method", "POST", f"http://{LOOPBACK}:{stub.other_port}/anything")
    assert code == 0
    assert (lines[0]["method"], lines[0]["path"], lines[0]["status"]) == ("POST", "/anything", 200)


def test_status_path_answers_that_status_and_counts_as_an_answer(stub: Stub) -> None:
    code, lines = client(f"http://{LOOPBACK}:{stub.port}/status/503")
    assert code == 0
    assert (lines[0]["status"], lines[0]["app"], lines[0]["path"]) == (
        503,
        "httpbin",
        "/status/503",
    )
    assert "GET /status/503 503 -" in stub.log_lines()
    # no body (204): the status alone
    assert client(f"http://{LOOPBACK}:{stub.port}/status/204") == (0, [{"status": 204}])


def test_status_for() -> None:
    assert [status_for(p) for p in ("/", "/status/418?x", "/status/99x", "/status/700")] == [
        200,
        418,
        400,
        400,
    ]


def test_request_bodies_are_read_and_the_connection_kept_alive(stub: Stub) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, stub.port, timeout=5)
    try:
        conn.request("PUT", "/a", body=b"x" * 100_000, headers={"Host": "a.example"})
        first = conn.getresponse()
        assert json.loads(first.read())["method"] == "PUT"
        conn.request("POST", "/b", body=iter([b"chunk", b"ed"]), encode_chunked=True)
        second = conn.getresponse()
        body = json.loads(second.read())
        assert (second.status, body["method"], body["path"]) == (200, "POST", "/b")
        conn.request("HEAD", "/c")
        head = conn.getresponse()
        assert (head.status, head.read(), int(head.getheader("content-length") or 0) > 0) == (
            200,
            b"",
            True,
        )
    finally:
        conn.close()


# ------------------------------------------------------------------------------ XFCC


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (XFCC_ONE, "spiffe://cluster.local/ns/foo/sa/sleep"),
        (XFCC_TWO, "spiffe://cluster.local/ns/foo/sa/sleep"),
        (
            'Hash=1;URI="spiffe://cluster.local/ns/q/sa/quoted"',
            "spiffe://cluster.local/ns/q/sa/quoted",
        ),
        ("URI=spiffe://cluster.local/ns/a/sa/first,Hash=2;By=x", None),  # last element has no URI
        ("", None),
        (None, None),
    ],
)
def test_peer_is_the_uri_of_the_last_xfcc_element(header: str | None, peer: str | None) -> None:
    assert peer_from_xfcc(header) == peer


@pytest.mark.parametrize("header", [XFCC_ONE, XFCC_TWO])
def test_stub_reports_the_xfcc_peer(stub: Stub, header: str) -> None:
    code, lines = client(
        "-H", f"x-forwarded-client-cert: {header}", f"http://{LOOPBACK}:{stub.port}/p"
    )
    assert code == 0
    assert lines[0]["peer"] == "spiffe://cluster.local/ns/foo/sa/sleep"
    assert "GET /p 200 spiffe://cluster.local/ns/foo/sa/sleep" in stub.log_lines()


# ------------------------------------------------------------------------------ HTTP/2, TCP


def test_h2c_prior_knowledge(stub: Stub) -> None:
    with httpx.Client(http1=False, http2=True, timeout=5) as h2c:
        got = h2c.get(
            f"http://{LOOPBACK}:{stub.port}/status/418",
            headers={"x-forwarded-client-cert": XFCC_TWO},
        )
        posted = h2c.post(f"http://{LOOPBACK}:{stub.port}/post", content=b"y" * 70_000)
    assert (got.http_version, got.status_code) == ("HTTP/2", 418)
    assert got.json() == {
        "cluster": "c1",
        "namespace": "foo",
        "app": "httpbin",
        "method": "GET",
        "path": "/status/418",
        "peer": "spiffe://cluster.local/ns/foo/sa/sleep",
        "host": f"{LOOPBACK}:{stub.port}",
    }
    assert (posted.http_version, posted.status_code, posted.json()["method"]) == (
        "HTTP/2",
        200,
        "POST",
    )


def test_silent_tcp_client_gets_one_line(stub: Stub) -> None:
    code, lines = client(f"tcp://{LOOPBACK}:{stub.other_port}")
    assert code == 0
    assert lines == [
        {
            "cluster": "c1",
            "namespace": "foo",
            "app": "httpbin",
            "method": None,
            "path": None,
            "peer": None,
            "host": None,
            "status": None,
        }
    ]


def test_non_http_bytes_get_the_line_and_a_close(stub: Stub) -> None:
    with socket.create_connection((LOOPBACK, stub.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01hello, not http\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    line = json.loads(received)
    assert (received.count(b"\n"), line["app"], line["method"]) == (1, "httpbin", None)


# ------------------------------------------------------------------------------ TLS, --connect


def test_tls_port_verified_against_the_ca_with_the_url_host(stub: Stub, pki: Pki) -> None:
    url = f"https://{SERVER_NAME}:{stub.tls_port}/secure"
    dial = f"{LOOPBACK}:{stub.tls_port}"
    code, lines = client("--connect", dial, "--cacert", str(pki.ca), url)
    assert code == 0
    assert (lines[0]["status"], lines[0]["host"]) == (200, f"{SERVER_NAME}:{stub.tls_port}")

    code, lines = client("--connect", dial, url)  # the system CAs do not know the lab CA
    assert code == 1
    assert lines[0]["error"].startswith("TLS certificate verification failed")

    other = f"https://other.lab.test:{stub.tls_port}/"
    code, lines = client("--connect", dial, "--cacert", str(pki.ca), other)
    assert code == 1
    assert "other.lab.test" in lines[0]["error"]

    code, lines = client("--connect", dial, "--insecure", other)
    assert (code, lines[0]["status"]) == (0, 200)


def test_connect_keeps_the_url_host_as_host_header(stub: Stub) -> None:
    url = "http://httpbin.foo.svc.cluster.local/x"  # not resolvable: only --connect gets there
    code, lines = client("--connect", f"{LOOPBACK}:{stub.port}", url)
    assert code == 0
    assert (lines[0]["host"], lines[0]["path"]) == ("httpbin.foo.svc.cluster.local", "/x")


@contextlib.contextmanager
def serve_in_thread(
    handle: Callable[[socket.socket], None], connections: int, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[int, list[BaseException]]]:
    """Accept ``connections`` connections on a loopback port, each passed to ``handle``."""
    errors: list[BaseException] = []
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(RUN_TIMEOUT)
    port = int(listener.getsockname()[1])
    server = tls.wrap_socket(listener, server_side=True) if tls else listener

    def loop() -> None:
        for _ in range(connections):
            try:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5)
                    handle(conn)
            except Exception as exc:
                errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield port, errors
    finally:
        thread.join(timeout=RUN_TIMEOUT)
        server.close()


def answer_plain_text(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")


def test_client_sends_sni_and_its_certificate(pki: Pki) -> None:
    seen: dict[str, Any] = {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen["sni"] = name  # None would go on with the handshake; a number would abort it

    context.sni_callback = record_sni

    def handle(conn: socket.socket) -> None:
        assert isinstance(conn, ssl.SSLSocket)
        peer = conn.getpeercert()
        assert peer is not None
        subject: Any = peer["subject"]  # ((("commonName", "lab client"),),): typeshed is wider
        seen["subject"] = dict(rdn[0] for rdn in subject)
        answer_plain_text(conn)

    with serve_in_thread(handle, 1, context) as (port, errors):
        code, lines = client(
            "--connect", f"{LOOPBACK}:{port}", "--cacert", str(pki.ca),
            "--cert", str(pki.client_cert), "--key", str(pki.client_key),
            f"https://{SERVER_NAME}:{port}/",
        )  # fmt: skip
    assert errors == []
    assert (code, lines) == (0, [{"status": 200}])  # a body that is not JSON: the status alone
    assert seen == {"sni": SERVER_NAME, "subject": {"commonName": "lab client"}}


# ------------------------------------------------------------------------------ count, errors


def test_count_sends_each_request_on_a_new_connection() -> None:
    with serve_in_thread(answer_plain_text, 3) as (port, errors):
        code, lines = client("--count", "3", f"http://{LOOPBACK}:{port}/")
    assert errors == []  # three connections accepted, each answered once
    assert (code, lines) == (0, [{"status": 200}] * 3)


def test_count_against_the_stub_prints_one_line_each(stub: Stub) -> None:
    code, lines = client("--count", "4", f"http://{LOOPBACK}:{stub.port}/n")
    assert code == 0
    assert [line["path"] for line in lines] == ["/n"] * 4


def test_refused_port_is_an_error_line_and_exit_1() -> None:
    code, lines = client("--count", "2", f"http://{LOOPBACK}:{free_port()}/")
    assert (code, lines) == (1, [{"error": "connection refused"}] * 2)


def test_silent_server_times_out() -> None:
    with socket.create_server((LOOPBACK, 0)) as listener:  # never accepts: the backlog holds us
        port = listener.getsockname()[1]
        code, lines = client("--timeout", "0.5", f"http://{LOOPBACK}:{port}/")
    assert (code, lines) == (1, [{"error": "timed out"}])


def test_tcp_close_without_a_line_is_an_error() -> None:
    with serve_in_thread(lambda conn: None, 1) as (port, errors):
        code, lines = client(f"tcp://{LOOPBACK}:{port}")
    assert errors == []
    assert (code, lines) == (1, [{"error": "connection closed without an answer"}])


# ------------------------------------------------------------------------------ shutdown


def test_stub_exits_cleanly_on_sigterm_with_a_connection_open(tmp_path: Path, pki: Pki) -> None:
    with run_stub(tmp_path, pki) as running:
        conn = http.client.HTTPConnection(LOOPBACK, running.port, timeout=5)
        conn.request("GET", "/")
        conn.getresponse().read()  # the keep-alive connection stays open
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=5) == 0
        conn.close()
    assert "Traceback" not in running.log.read_text()


# ------------------------------------------------------------------------------ long-lived


def test_a_tcp_client_that_keeps_talking_gets_a_line_for_each_line(stub: Stub) -> None:
    with socket.create_connection((LOOPBACK, stub.other_port), timeout=RUN_TIMEOUT) as sock:
        reader = sock.makefile("rb")
        lines = [json.loads(reader.readline())]  # the greeting, after the client's silence
        for _ in range(3):
            sock.sendall(b"again\n")
            lines.append(json.loads(reader.readline()))
    assert [line["app"] for line in lines] == ["httpbin"] * 4


def steady(tmp_path: Path, *args: str, seconds: float = 1.5) -> dict[str, Any]:
    """Run ``programs.steady`` for ``seconds``, stop it as the lab does (SIGTERM): its report."""
    out = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshbridge_dev.lab.programs.steady", "--out", str(out),
         "--interval", "0.05", "--timeout", "2", *args],
        stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0 and "Traceback" not in err, err
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["running"] is False
    return report


def test_steady_traffic_counts_every_request_on_new_and_held_connections(
    stub: Stub, tmp_path: Path
) -> None:
    http_url, tcp_url = f"http://{LOOPBACK}:{stub.port}/", f"tcp://{LOOPBACK}:{stub.other_port}"
    report = steady(tmp_path, "--new", http_url, "--held", http_url, "--new", tcp_url,
                    "--held", tcp_url)
    callers = report["callers"]
    assert report["failed"] == 0 and report["failures"] == [], report
    assert report["ok"] == sum(c["ok"] for c in callers.values())
    for name, counts in callers.items():
        assert counts["ok"] >= 3, (name, counts)
        assert counts["answered_by"] == {"c1/httpbin": counts["ok"]}
        # a held caller used one connection throughout; a new one, one per request
        expected = 1 if name.startswith("held ") else counts["ok"]
        assert counts["connections"] == expected, (name, counts)


def test_steady_traffic_counts_every_failure_with_its_reason(stub: Stub, tmp_path: Path) -> None:
    refused = f"tcp://{LOOPBACK}:{free_port()}"
    report = steady(tmp_path, "--new", f"http://{LOOPBACK}:{stub.port}/status/503",
                    "--held", refused)
    callers = report["callers"]
    assert report["ok"] == 0 and report["failed"] == sum(c["failed"] for c in callers.values())
    assert all(c["failed"] >= 3 for c in callers.values()), callers
    reasons = {(f["caller"].split()[0], f["error"]) for f in report["failures"]}
    assert reasons == {("new", "status 503"), ("held", "connection refused")}
