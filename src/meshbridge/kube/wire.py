"""A lean HTTP/1.1 transport for the reconciler's lightkube client.

lightkube builds every request and reads every answer through httpx; this module replaces only
the layer below httpx (its default transport: httpcore's pool, h11 and anyio's TLS stream),
which costs about a millisecond of CPU per request. A reconcile sends thousands of small
requests to API servers that often share the machine's cores, so that millisecond is time the
servers do not get. Here a request is one buffer written to a kept-alive TLS connection and the
answer is parsed with a few byte-string operations. Authentication (tokens, exec plugins,
re-reading on 401), URLs, redirects, proxies from the environment and decompression stay with
httpx and lightkube.

What it speaks: HTTP/1.1 over TCP or TLS, bodies of a known length or chunked, keep-alive with
at most ``max_connections`` connections per origin. It reads each answer whole, so it is for
requests whose answers end (no watches). Errors are httpx's own (``ConnectError``,
``ReadTimeout``, ``RemoteProtocolError``, ...), so callers handle them as with the default
transport. A request that fails on a kept-alive connection before any answer arrived (the
server closed it while idle) is sent once more on a new connection, unless it is a POST.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube.config.client_adapter import verify_cluster

_NO_BODY_STATUS = frozenset({204, 304})
_MAX_HEAD = 64 * 1024


class _Stale(Exception):
    """A kept-alive connection failed before any byte of the answer arrived."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    used: bool = False

    def usable(self, expiry: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.transport.is_closing()
            and time.monotonic() - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.transport.abort()


@dataclass
class _Origin:
    gate: asyncio.Semaphore
    idle: collections.deque[_Connection] = field(default_factory=collections.deque)


class LeanTransport(httpx2.AsyncBaseTransport):
    """An httpx transport that speaks HTTP/1.1 itself (see the module docstring)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        *,
        max_connections: int = 16,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl = ssl_context
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._origins: dict[tuple[str, str, int], _Origin] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(asyncio.Semaphore(self._max))
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
        head.append(b"\r\n")
        payload = b"".join(head) + body

        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await origin.gate.acquire()
        except TimeoutError:
            raise httpx2.PoolTimeout("no connection became free in time", request=request) from None
        try:
            for attempt in (1, 2):
                conn = self._idle(origin)
                if conn is None:
                    conn = await self._open(key, timeouts, request)
                try:
                    status, reason, headers, content, keep = await _exchange(
                        conn, payload, request, timeouts
                    )
                except _Stale as exc:
                    conn.close()
                    if attempt == 2 or request.method == "POST":
                        raise httpx2.RemoteProtocolError(
                            "server disconnected without sending a response", request=request
                        ) from exc.__cause__
                    continue
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    conn.used, conn.idle_since = True, time.monotonic()
                    origin.idle.append(conn)
                else:
                    conn.close()
                return httpx2.Response(
                    status,
                    headers=headers,
                    stream=httpx2.ByteStream(content),
                    extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
                )
            raise AssertionError("unreachable")
        finally:
            origin.gate.release()

    def _idle(self, origin: _Origin) -> _Connection | None:
        while origin.idle:
            conn = origin.idle.pop()  # the most recently used: the least likely to be stale
            if conn.usable(self._expiry):
                return conn
            conn.close()
        return None

    async def _open(
        self,
        key: tuple[str, str, int],
        timeouts: dict[str, float | None],
        request: httpx2.Request,
    ) -> _Connection:
        scheme, host, port = key
        tls = self._ssl if scheme == "https" else None
        if scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_MAX_HEAD
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=request
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()
        self._origins.clear()


async def _exchange(
    conn: _Connection,
    payload: bytes,
    request: httpx2.Request,
    timeouts: dict[str, float | None],
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """Send one request and read its answer: status, reason, headers, body, keep-alive."""
    reused = conn.used
    try:
        conn.writer.write(payload)
        async with asyncio.timeout(timeouts.get("write")):
            await conn.writer.drain()
    except TimeoutError:
        raise httpx2.WriteTimeout("sending the request timed out", request=request) from None
    except (OSError, ssl.SSLError) as exc:
        if reused:
            raise _Stale() from exc
        raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    reader = conn.reader
    try:
        async with asyncio.timeout(timeouts.get("read")):
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise _Stale() from exc
                    raise httpx2.RemoteProtocolError(
                        "server disconnected without sending a complete response",
                        request=request,
                    ) from exc
                except (ConnectionError, ssl.SSLError) as exc:
                    if reused:
                        raise _Stale() from exc
                    raise
                status, reason, headers = _parse_head(raw, request)
                if status >= 200 or status == 101:
                    break  # 1xx other than 101: an interim answer, the real one follows
            fields = {name.lower(): value for name, value in headers}
            keep = fields.get(b"connection", b"").lower() != b"close"
            if request.method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
                content = b""
            elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
                content = await _read_chunked(reader, request)
            elif b"content-length" in fields:
                try:
                    length = int(fields[b"content-length"])
                except ValueError:
                    raise httpx2.RemoteProtocolError(
                        "malformed Content-Length", request=request
                    ) from None
                content = await reader.readexactly(length)
            else:  # the body ends where the connection does
                content, keep = await reader.read(), False
    except TimeoutError:
        raise httpx2.ReadTimeout("reading the response timed out", request=request) from None
    except asyncio.IncompleteReadError as exc:
        raise httpx2.RemoteProtocolError(
            "server disconnected in the middle of the response", request=request
        ) from exc
    except asyncio.LimitOverrunError as exc:
        raise httpx2.RemoteProtocolError(
            "response header or chunk line too long", request=request
        ) from exc
    except (ConnectionError, ssl.SSLError) as exc:
        raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
    return status, reason, headers, content, keep


def _parse_head(
    raw: bytes, request: httpx2.Request
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx2.RemoteProtocolError(
            f"malformed status line {lines[0][:80]!r}", request=request
        )
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx2.RemoteProtocolError(
                f"malformed header line {line[:80]!r}", request=request
            )
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) == 3 else b"", headers


async def _read_chunked(reader: asyncio.StreamReader, request: httpx2.Request) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise httpx2.RemoteProtocolError(
                f"malformed chunk size {line[:40]!r}", request=request
            ) from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers: not used by the Kubernetes API
            return b"".join(chunks)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise httpx2.RemoteProtocolError("malformed chunk", request=request)
        chunks.append(chunk[:-2])


def transport_for(config: Any) -> LeanTransport:
    """The transport for a lightkube ``SingleConfig``: TLS set up the way lightkube would
    (cluster CA or system trust, ``insecure-skip-tls-verify``, client certificate)."""
    context = verify_cluster(config.cluster, config.user, config.abs_file)
    return LeanTransport(context)
