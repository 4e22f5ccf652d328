"""The stub workload: what answers behind a lab sidecar in place of a real application.

A lab check needs to see, from the caller's side, which instance of which app in which cluster
answered, and which identity the answering sidecar saw on the mTLS connection. So every answer is
the same small JSON object: ``cluster``, ``namespace`` and ``app`` (who answered), ``method``,
``path`` and ``host`` (what arrived), and ``peer``, the caller's SPIFFE URI taken from the last
element of ``x-forwarded-client-cert`` (the element the answering sidecar added).

One port speaks whatever the sidecar speaks to it, found from the first bytes of the connection:

* HTTP/1.x: any method and path; ``/status/NNN`` answers status NNN (as httpbin does);
* HTTP/2 with prior knowledge (h2c), which Envoy uses toward ports declared HTTP2 or GRPC,
  served with the ``h2`` state machine;
* anything else: one JSON line with the request fields null, then close; a client that sends
  nothing within 0.3 s (server-first protocols such as MySQL) gets the line, and then one more
  for every line it sends, until it closes.

Run as ``python -m meshbridge_dev.lab.programs.stub --cluster C --namespace NS --app A --port P
[--tls-port P --cert F --key F]``. One line per request goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import re
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SILENCE = 0.3  # a client quiet this long after connecting is served the TCP line
CLASSIFY_TIMEOUT = 5.0  # a client that started a request line gets this long to finish it
MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_REQUEST_LINE = re.compile(_TOKEN + rb"+ [^ \r\n]+ HTTP/1\.[0-9]\r?\n")
_PARTIAL_REQUEST_LINE = re.compile(_TOKEN + rb"{1,32}(?: [^ \r\n]*(?: ([^ \r\n]*)\r?)?)?")
_STATUS_PATH = re.compile(r"/status/([0-9]{3})")

Log = Callable[[str], None]


# ------------------------------------------------------------------------------ answers


@dataclass(frozen=True)
class Workload:
    """Who answers: the identity written into every answer."""

    cluster: str
    namespace: str
    app: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes (a backslash escapes inside quotes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def peer_from_xfcc(header: str | None) -> str | None:
    """The ``URI`` of the last element of an Envoy ``x-forwarded-client-cert`` header, or None.

    Envoy's format: elements separated by commas, each a ``;``-separated list of ``key=value``
    pairs whose values are double-quoted when they hold ``,``, ``;`` or ``=``. Each proxy on the
    way appends an element, so the last one is what the answering sidecar saw.
    """
    if not header or not header.strip():
        return None
    last = _split_unquoted(header, ",")[-1]
    for pair in _split_unquoted(last, ";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip().lower() == "uri":
            return _unquote(value) or None
    return None


def status_for(path: str) -> int:
    """200, or NNN for ``/status/NNN`` (400 when NNN is not a status an answer can carry)."""
    match = _STATUS_PATH.fullmatch(path.partition("?")[0])
    if match is None:
        return 400 if path.startswith("/status/") else 200
    code = int(match.group(1))
    return code if 200 <= code <= 599 else 400


def describe(
    workload: Workload,
    method: str | None = None,
    path: str | None = None,
    peer: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    return {
        "cluster": workload.cluster,
        "namespace": workload.namespace,
        "app": workload.app,
        "method": method,
        "path": path,
        "peer": peer,
        "host": host,
    }


def answer(workload: Workload, method: str, path: str, headers: dict[str, str]) -> Answer:
    """The answer to one HTTP request; ``headers`` has lower-case names.

    The body is there even for HEAD (its length is the Content-Length); the caller omits it.
    """
    peer = peer_from_xfcc(headers.get("x-forwarded-client-cert"))
    host = headers.get(":authority") or headers.get("host")
    status = status_for(path)
    body = b""
    if status not in (204, 304):
        body = json.dumps(describe(workload, method, path, peer, host)).encode() + b"\n"
    return Answer(status, body)


def log_request(
    log: Log, method: str, path: str, status: int | str, headers: dict[str, str]
) -> None:
    peer = peer_from_xfcc(headers.get("x-forwarded-client-cert"))
    log(f"{method} {path} {status} {peer or '-'}")


# ------------------------------------------------------------------------------ connection


class Buffered:
    """A StreamReader with the bytes already read in front of it."""

    def __init__(self, reader: asyncio.StreamReader, data: bytes) -> None:
        self.reader = reader
        self.buffer = bytearray(data)

    async def _fill(self) -> bool:
        chunk = await self.reader.read(READ_SIZE)
        self.buffer += chunk
        return bool(chunk)

    async def until(self, separator: bytes, limit: int = MAX_HEAD) -> bytes | None:
        """Bytes up to and including ``separator``; None at EOF; ValueError past ``limit``."""
        while (index := self.buffer.find(separator)) < 0:
            if len(self.buffer) > limit:
                raise ValueError("header section too large")
            if not await self._fill():
                return None
        end = index + len(separator)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def discard(self, count: int) -> bool:
        """Drop ``count`` bytes; False at EOF first."""
        while count > 0:
            if not self.buffer and not await self._fill():
                return False
            taken = min(count, len(self.buffer))
            del self.buffer[:taken]
            count -= taken
        return True


def classify(data: bytes) -> str | None:
    """``h2``, ``http1`` or ``tcp`` from a connection's first bytes; None when more are needed."""
    if not data:
        return "tcp"
    if H2_PREFACE.startswith(data[: len(H2_PREFACE)]):
        return "h2" if len(data) >= len(H2_PREFACE) else None
    if _REQUEST_LINE.match(data):
        return "http1"
    partial = _PARTIAL_REQUEST_LINE.fullmatch(data)
    version = partial.group(1) if partial else None
    if partial and (
        version is None or any(v.startswith(version) for v in (b"HTTP/1.1", b"HTTP/1.0"))
    ):
        return None
    return "tcp"


async def first_bytes(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """Wait for the client to show what it speaks: (kind, bytes read so far)."""
    try:
        data = await asyncio.wait_for(reader.read(READ_SIZE), SILENCE)
    except TimeoutError:
        return "tcp", b""
    while (kind := classify(data)) is None:
        try:
            more = await asyncio.wait_for(reader.read(READ_SIZE), CLASSIFY_TIMEOUT)
        except TimeoutError:
            return "tcp", data
        if not more:
            return "tcp", data
        data += more
    return kind, data


async def serve_tcp(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    workload: Workload,
    log: Log,
    converse: bool,
) -> None:
    """One line at once. A client that spoke first (something not HTTP) then gets a close; one
    that waited (``converse``) gets one more line for every line it sends, until it closes: it
    reads a line and hangs up as on a server-first protocol, or keeps talking on a long-lived
    connection (the lab's steady traffic)."""
    line = json.dumps(describe(workload)).encode() + b"\n"
    while True:
        writer.write(line)
        await writer.drain()
        log("TCP - - -")
        if not converse:
            return
        try:
            if not await reader.readline():
                return
        except ValueError:  # a line longer than the stream's limit: not a lab client
            return


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line {line[:40]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
    return method, target, version.strip(), headers


async def _discard_body(stream: Buffered, headers: dict[str, str]) -> bool:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await stream.until(b"\r\n", limit=4096)
            if line is None:
                return False
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := await stream.until(b"\r\n")) not in (b"\r\n", None):
                    pass
                return trailer is not None
            if not await stream.discard(size + 2):
                return False
    length = int(headers.get("content-length", "0") or "0")
    if length < 0:
        raise ValueError("negative content-length")
    return await stream.discard(length)


def _http1_response(status: int, body: bytes, content_length: int, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {content_length}\r\n"
        f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def serve_http1(
    stream: Buffered, writer: asyncio.StreamWriter, workload: Workload, log: Log
) -> None:
    """Serve requests on one connection until the client or a ``close`` ends it."""
    while True:
        try:
            head = await stream.until(b"\r\n\r\n")
            if head is None:
                return
            method, target, version, headers = _parse_head(head)
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if not await _discard_body(stream, headers):
                return
        except ValueError:
            writer.write(_http1_response(400, b"", 0, keep_alive=False))
            await writer.drain()
            log("- - 400 -")
            return
        connection = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        keep_alive = (
            "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        )
        result = answer(workload, method, target, headers)
        body = b"" if method == "HEAD" else result.body
        writer.write(_http1_response(result.status, body, len(result.body), keep_alive))
        await writer.drain()
        log_request(log, method, target, result.status, headers)
        if not keep_alive:
            return


async def serve_h2(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    data: bytes,
    workload: Workload,
    log: Log,
) -> None:
    """Serve HTTP/2 streams (prior knowledge) until the client goes away."""
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    requests: dict[int, dict[str, str]] = {}
    while data:
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            writer.write(conn.data_to_send())
            await writer.drain()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
                headers: dict[str, str] = {}
                for raw_name, raw_value in event.headers or []:
                    name = bytes(raw_name).decode("utf-8", "replace").lower()
                    value = bytes(raw_value).decode("utf-8", "replace")
                    headers[name] = f"{headers[name]},{value}" if name in headers else value
                requests[event.stream_id] = headers
            elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
                _respond_h2(conn, event.stream_id, requests.pop(event.stream_id, {}), workload, log)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
                requests.pop(event.stream_id, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                writer.write(conn.data_to_send())
                await writer.drain()
                return
        writer.write(conn.data_to_send())
        await writer.drain()
        data = await reader.read(READ_SIZE)


def _respond_h2(
    conn: h2.connection.H2Connection,
    stream_id: int,
    headers: dict[str, str],
    workload: Workload,
    log: Log,
) -> None:
    method, path = headers.get(":method", "GET"), headers.get(":path", "/")
    result = answer(workload, method, path, headers)
    if len(result.body) > conn.local_flow_control_window(stream_id):
        # Only a path of tens of kilobytes gets here; waiting for WINDOW_UPDATE is not worth it.
        result = Answer(414, json.dumps(describe(workload, method)).encode() + b"\n")
    body = b"" if method == "HEAD" else result.body
    response = [
        (":status", str(result.status)),
        ("content-type", "application/json"),
        ("content-length", str(len(result.body))),
    ]
    conn.send_headers(stream_id, response, end_stream=not body)
    frame = conn.max_outbound_frame_size
    for start in range(0, len(body), frame):
        conn.send_data(
            stream_id, body[start : start + frame], end_stream=start + frame >= len(body)
        )
    log_request(log, method, path, result.status, headers)


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, workload: Workload, log: Log
) -> None:
    kind, data = await first_bytes(reader)
    if kind == "h2":
        await serve_h2(reader, writer, data, workload, log)
    elif kind == "http1":
        await serve_http1(Buffered(reader, data), writer, workload, log)
    else:
        await serve_tcp(reader, writer, workload, log, converse=not data)


# ------------------------------------------------------------------------------ process


@dataclass(frozen=True)
class Config:
    workload: Workload
    bind: str
    ports: tuple[int, ...]
    tls_ports: tuple[int, ...]
    cert: str | None
    key: str | None


def log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def serve(config: Config, log: Log = log_stderr) -> int:
    """Listen on every port until SIGTERM or SIGINT; 0 on a clean stop, 1 if a port fails."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connections: set[asyncio.Task[Any]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await serve_connection(reader, writer, config.workload, log)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutdown cancels open connections. Ending quietly rather than re-raising: Python
            # 3.11's stream callback calls task.exception() on the task and would log a traceback.
            pass
        except Exception as exc:
            log(f"connection failed: {type(exc).__name__}: {exc}")
        finally:
            connections.discard(task)
            writer.close()

    tls: ssl.SSLContext | None = None
    if config.tls_ports:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.set_alpn_protocols(["h2", "http/1.1"])
        try:
            tls.load_cert_chain(config.cert or "", config.key)
        except (OSError, ssl.SSLError) as exc:
            log(f"meshlab.stub: cannot load --cert/--key: {exc}")
            return 1
    listeners = [(port, None) for port in config.ports] + [(port, tls) for port in config.tls_ports]
    servers: list[asyncio.Server] = []
    try:
        for port, context in listeners:
            servers.append(
                await asyncio.start_server(
                    on_connect, config.bind, port, ssl=context, reuse_address=True
                )
            )
    except OSError as exc:
        log(f"meshlab.stub: cannot listen on {config.bind}: {exc}")
        for server in servers:
            server.close()
        return 1
    w = config.workload
    where = ", ".join(f"{port}{'/tls' if context else ''}" for port, context in listeners)
    log(f"meshlab.stub: {w.cluster}/{w.namespace}/{w.app} listening on {config.bind} ports {where}")
    await stop.wait()
    for server in servers:
        server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m meshbridge_dev.lab.programs.stub", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--port", type=int, action="append", default=[], help="plain port (repeat)")
    parser.add_argument(
        "--tls-port", type=int, action="append", default=[], help="TLS port (repeat)"
    )
    parser.add_argument("--cert", help="PEM certificate chain for --tls-port")
    parser.add_argument("--key", help="PEM private key for --tls-port")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    args = parser.parse_args(argv)
    if not args.port and not args.tls_port:
        parser.error("give at least one --port or --tls-port")
    if args.tls_port and not (args.cert and args.key):
        parser.error("--tls-port needs --cert and --key")
    return Config(
        workload=Workload(args.cluster, args.namespace, args.app),
        bind=args.bind,
        ports=tuple(args.port),
        tls_ports=tuple(args.tls_port),
        cert=args.cert,
        key=args.key,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
