"""The lab requester: N requests, one JSON line each, so a check can count who answered.

A lab check runs this inside a pod's network namespace, where the sidecar captures its traffic
and Istio's agent answers DNS, so it resolves names with the system resolver and knows nothing of
the mesh. Every request goes on a NEW connection: a proxy balances connections, and reusing one
would send every request to the same endpoint. Each request prints one line to stdout:

* an HTTP answer with a JSON object body: that object plus ``"status": <code>``;
* an HTTP answer with any other body: ``{"status": <code>}``;
* ``tcp://host:port``: connect, send nothing, read one line; a JSON object is printed with
  ``"status": null`` added (any other line as ``{"status": null}``);
* a failure: ``{"error": "<short reason>"}``, never a traceback.

The exit status is 0 when every request got an answer (any HTTP status counts), 1 otherwise, 2
for bad arguments. ``--connect HOST:PORT`` dials that address but keeps the URL's host as Host
header and TLS server name, as ``curl --resolve`` does. Standard library only.

    python -m meshbridge_dev.lab.programs.client [--method M] [--count N] [--timeout S]
        [--connect HOST:PORT] [--header 'Name: value' ...] [--cacert F] [--cert F --key F]
        [--insecure] URL
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_LINE = 64 * 1024


class RequestFailed(Exception):
    """A request that got no answer; the message is the short reason printed."""


@dataclass(frozen=True)
class Target:
    scheme: str  # http, https or tcp
    host: str  # from the URL: Host header and TLS server name
    port: int
    host_header: str
    path: str  # request target, with the query
    dial: tuple[str, int]  # where to connect: the URL's host and port, or --connect


@dataclass(frozen=True)
class Request:
    target: Target
    method: str
    headers: tuple[tuple[str, str], ...]
    timeout: float
    tls: ssl.SSLContext | None


# ------------------------------------------------------------------------------ one request


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request."""
    if isinstance(exc, RequestFailed):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionAbortedError | BrokenPipeError):
        return "connection closed without an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer: {type(exc).__name__}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def connect(target: Target, timeout: float) -> socket.socket:
    """A TCP connection to ``target.dial`` (IPv4, system resolver)."""
    host, port = target.dial
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RequestFailed(f"name resolution failed: {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def send_http(request: Request) -> dict[str, Any]:
    target = request.target
    sock = connect(target, request.timeout)
    try:
        if request.tls is not None:
            sock = request.tls.wrap_socket(sock, server_hostname=target.host)
        conn = http.client.HTTPConnection(target.host, target.port, timeout=request.timeout)
        conn.sock = sock
        headers = {
            "Host": target.host_header,
            "User-Agent": "meshlab-client",
            "Connection": "close",
        }
        headers.update(request.headers)
        conn.request(request.method, target.path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        sock.close()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return {**parsed, "status": response.status}
    return {"status": response.status}


def send_tcp(request: Request) -> dict[str, Any]:
    """Connect, send nothing, read one line (up to a newline, EOF or the timeout)."""
    data = bytearray()
    with connect(request.target, request.timeout) as sock:
        while b"\n" not in data and len(data) < MAX_LINE:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                if data:
                    break
                raise
            if not chunk:
                break
            data += chunk
    if not data:
        raise RequestFailed("connection closed without an answer")
    try:
        parsed = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return {**parsed, "status": None}
    return {"status": None}


def send(request: Request) -> dict[str, Any]:
    """One request on a new connection: its answer, or ``{"error": reason}``."""
    try:
        if request.target.scheme == "tcp":
            return send_tcp(request)
        return send_http(request)
    except Exception as exc:
        return {"error": describe_error(exc)}


# ------------------------------------------------------------------------------ command line


def parse_target(url: str, connect_to: str | None) -> Target:
    """The URL and ``--connect`` as a Target; ValueError with a message when they are unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "tcp"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http, https or tcp)")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}") from exc
    if port is None:
        raise ValueError("a tcp:// URL needs a port")
    dial = (host, port)
    if connect_to is not None:
        dial_host, sep, dial_port = connect_to.rpartition(":")
        if not sep or not dial_host or not dial_port.isdigit():
            raise ValueError(f"--connect wants HOST:PORT, got {connect_to!r}")
        dial = (dial_host.strip("[]"), int(dial_port))
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port, parts.netloc.rpartition("@")[2], path, dial)


def tls_context(
    cacert: str | None, cert: str | None, key: str | None, insecure: bool
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cacert)
    context.set_alpn_protocols(["http/1.1"])
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshbridge_dev.lab.programs.client",
        description=(__doc__ or "").split("\n")[0],
    )
    parser.add_argument("url", metavar="URL", help="http://, https:// or tcp://host:port")
    parser.add_argument("--method", default="GET", help="HTTP method (default GET)")
    parser.add_argument("--count", type=int, default=1, help="requests to send (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default 10)"
    )
    parser.add_argument("--connect", metavar="HOST:PORT", help="dial this address instead")
    parser.add_argument(
        "-H",
        "--header",
        type=parse_header,
        action="append",
        default=[],
        help="extra header (repeat)",
    )
    parser.add_argument("--cacert", help="PEM CA bundle that verifies an https server")
    parser.add_argument("--cert", help="PEM client certificate chain to present")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server")
    parser.add_argument(
        "--timing",
        action="store_true",
        help='add "ms": the time each request took, "t": seconds since the first began, and '
             '"at": when it began (seconds since the epoch)',
    )
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between request starts (default 0)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.interval < 0:
        parser.error("--interval must not be negative")
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    try:
        target = parse_target(args.url, args.connect)
    except ValueError as exc:
        parser.error(str(exc))
    tls: ssl.SSLContext | None = None
    setup_error: str | None = None
    if target.scheme == "https":
        try:
            tls = tls_context(args.cacert, args.cert, args.key, args.insecure)
        except (OSError, ssl.SSLError) as exc:
            setup_error = f"cannot load TLS files: {exc}"
    request = Request(target, args.method.upper(), tuple(args.header), args.timeout, tls)
    answered = True
    first = time.perf_counter()
    for i in range(args.count):
        if args.interval:
            pause = first + i * args.interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        started, began = time.perf_counter(), time.time()
        result: dict[str, Any] = {"error": setup_error} if setup_error else send(request)
        if args.timing:
            result["ms"] = round((time.perf_counter() - started) * 1000, 3)
            result["t"] = round(started - first, 3)
            result["at"] = round(began, 3)
        answered = answered and "status" in result
        print(json.dumps(result), flush=True)
    return 0 if answered else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing left to say
        sys.stderr.close()
        sys.exit(1)
