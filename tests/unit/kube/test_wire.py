"""The lean HTTP/1.1 transport against a small local server that answers as scripted.

The transport runs under a real ``httpx2.AsyncClient`` (as lightkube drives it), so these
tests also cover what httpx adds on top: decompression, status errors, timeouts per request.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
import pytest

from meshbridge.kube.wire import LeanTransport

Reply = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]
"""(request number on this connection, request head, writer) -> keep the connection open?"""


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0


@asynccontextmanager
async def serve(reply: Reply) -> AsyncIterator[Server]:
    state = Server(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state.open_now += 1
        state.most_open = max(state.most_open, state.open_now)
        try:
            n = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                state.requests.append(head + body)
                n += 1
                if not await reply(n, head, writer):
                    return
                await writer.drain()
        finally:
            state.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def sync(test: Callable[..., Coroutine[None, None, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop."""

    @functools.wraps(test)
    def run(*args: object, **kw: object) -> None:
        asyncio.run(test(*args, **kw))

    return run


def client(server: Server, **kw: object) -> httpx2.AsyncClient:
    transport = LeanTransport(None, **kw)  # type: ignore[arg-type]
    return httpx2.AsyncClient(
        transport=transport, base_url=f"http://127.0.0.1:{server.port}", timeout=2.0
    )


def ok(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def always_ok(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(ok(b'{"n": %d}' % n, b"Content-Type: application/json"))
    return True


@sync
async def test_requests_share_a_kept_alive_connection_and_bodies_are_sent_whole() -> None:
    async with serve(always_ok) as server, client(server) as http:
        first = await http.patch("/apis/x/v1/things/a?fieldManager=m", content=b'{"spec": 1}')
        second = await http.get("/apis/x/v1/things")
    assert (first.json(), second.json()) == ({"n": 1}, {"n": 2})
    assert server.connections == 1
    assert server.requests[0].startswith(b"PATCH /apis/x/v1/things/a?fieldManager=m HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"spec": 1}')
    assert b"\r\nhost: 127.0.0.1:" in server.requests[0].lower()


@sync
async def test_chunked_and_gzipped_answers_are_decoded() -> None:
    payload = gzip.compress(b'{"items": [' + b",".join([b'{"a": 1}'] * 500) + b"]}")

    async def chunked(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        )
        for i in range(0, len(payload), 1000):
            part = payload[i : i + 1000]
            writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        writer.write(b"0\r\nX-Trailer: y\r\n\r\n")
        return True

    async with serve(chunked) as server, client(server) as http:
        first = await http.get("/list")
        second = await http.get("/list")
    assert len(first.json()["items"]) == 500
    assert second.json() == first.json()
    assert server.connections == 1


@sync
async def test_an_answer_without_length_ends_with_the_connection() -> None:
    async def until_close(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        return False

    async with serve(until_close) as server, client(server) as http:
        assert (await http.get("/a")).text == "all of it"
        assert (await http.get("/b")).text == "all of it"
    assert server.connections == 2


@sync
async def test_no_content_answers_leave_the_connection_usable() -> None:
    async def no_content(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" if n == 1 else ok(b"after"))
        return True

    async with serve(no_content) as server, client(server) as http:
        assert (await http.delete("/a")).status_code == 204
        assert (await http.get("/b")).text == "after"
    assert server.connections == 1


@sync
async def test_a_connection_closed_while_idle_is_replaced_for_retryable_requests() -> None:
    # The server takes the second request of each connection and hangs up without answering:
    # what a client sees when a server's keep-alive timeout races with its next request.
    async def drop_second(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 2:
            return False
        writer.write(ok(b"fine"))
        return True

    async with serve(drop_second) as server, client(server) as http:
        await http.get("/warm")
        assert (await http.patch("/apply", content=b"{}")).text == "fine"
        assert server.connections == 2
        with pytest.raises(httpx2.RemoteProtocolError, match="disconnected"):
            await http.post("/create", content=b"{}")  # not sent twice: it may have landed


@sync
async def test_error_statuses_reach_the_caller_as_answers() -> None:
    async def conflict(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        body = b'{"kind": "Status", "code": 409}'
        writer.write(b"HTTP/1.1 409 Conflict\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    async with serve(conflict) as server, client(server) as http:
        answer = await http.post("/x", content=b"{}")
    assert answer.status_code == 409
    assert answer.reason_phrase == "Conflict"
    assert answer.json()["code"] == 409


@sync
async def test_connections_per_origin_are_bounded() -> None:
    async def slow(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(ok(b"done"))
        return True

    async with serve(slow) as server, client(server, max_connections=3) as http:
        answers = await asyncio.gather(*(http.get(f"/{i}") for i in range(12)))
    assert all(a.text == "done" for a in answers)
    assert server.most_open <= 3
    assert server.connections <= 3


@sync
async def test_a_server_that_does_not_answer_times_out() -> None:
    async def silent(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serve(silent) as server, client(server) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.get("/", timeout=0.2)


@sync
async def test_nothing_listening_is_a_connect_error() -> None:
    async with serve(always_ok) as server:
        port = server.port
    transport = LeanTransport(None)
    async with httpx2.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get("/")


@pytest.mark.parametrize(
    "answer",
    [
        b"SPDY/3 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ],
)
@sync
async def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    async def bad(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        await writer.drain()
        return False

    async with serve(bad) as server, client(server) as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get("/")
