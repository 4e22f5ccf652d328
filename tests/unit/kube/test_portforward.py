"""GETs through pods/portforward, the meshbridge side: the kubelet's WebSocket framing (a channel
byte on every message, the port as the first message of each channel), HTTP/1.1 in the data
channel (two answers on one connection, chunked as istiod sends them), the error channel's text
and a refused upgrade reported as such. The other side here is an ASGI app doing what the
kubelet's ``pkg/streaming/portforward/websocket.go`` does with a connection that answers HTTP;
the real path (API server, kubelet stand-in, istiod) is the mesh lab's
(tests/lab/test_lab_propagation.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx2.websockets import ASGIWebSocketTransport
from istiodanswers import answer
from lightkube import AsyncClient, KubeConfig

from meshbridge.errors import PortForwardError
from meshbridge.kube import portforward

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PORT = 15014


def _config() -> KubeConfig:
    return KubeConfig.from_dict({
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example.invalid:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    })


def chunked(body: bytes, keep_alive: bool) -> bytes:
    """An answer as Go's net/http writes one of unknown length."""
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    return head + chunks + b"0\r\n\r\n"


def kubelet(answers: list[bytes], error: bytes = b"", status: int | None = None,
            seen: list[Scope] | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app framing ``answers`` as the kubelet frames what a pod's port sends: one
    answer per request received on the data channel; ``error`` on the error channel instead;
    or the upgrade refused with ``status``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if seen is not None:
            seen.append(scope)
        await receive()  # websocket.connect
        if status is not None:
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"denied"})
            return
        await send({"type": "websocket.accept", "subprotocol": portforward.PROTOCOL})
        port = PORT.to_bytes(2, "little")
        await send({"type": "websocket.send", "bytes": b"\x00" + port})
        await send({"type": "websocket.send", "bytes": b"\x01" + port})
        if error:
            await send({"type": "websocket.send", "bytes": b"\x01" + error})
        else:
            for body in answers:
                message = await receive()
                assert message["bytes"][:1] == b"\x00"
                assert b"GET /debug/" in message["bytes"]
                for i in range(0, len(body), 1000):  # as the runtime's copy splits a stream
                    await send({"type": "websocket.send", "bytes": b"\x00" + body[i:i + 1000]})
        await send({"type": "websocket.close", "code": 1000, "reason": ""})

    return app


def forwarded(app: Callable[[Scope, Receive, Send], Awaitable[None]],
              paths: list[str]) -> list[portforward.Answer]:
    async def run() -> list[portforward.Answer] | PortForwardError:
        async with ASGIWebSocketTransport(app) as transport:
            client = AsyncClient(config=_config(), transport=transport)
            try:
                return await portforward.get(client, "istio-system", "istiod-0", PORT, paths, 5)
            except PortForwardError as exc:  # raised outside: the transport's own task group
                return exc                   # would wrap it (a real connection has none)
            finally:
                await client.close()

    found = asyncio.run(run())
    if isinstance(found, PortForwardError):
        raise found
    return found


def test_two_answers_come_back_on_one_forwarded_connection() -> None:
    configz = answer("synced", "cluster2", "configz")
    syncz = answer("synced", "cluster2", "syncz")
    seen: list[Scope] = []
    app = kubelet([chunked(configz, True), chunked(syncz, False)], seen=seen)
    first, second = forwarded(app, ["/debug/configz", "/debug/syncz"])
    assert (first.status, first.body) == (200, configz)
    assert (second.status, second.body) == (200, syncz)
    [scope] = seen
    assert scope["path"] == "/api/v1/namespaces/istio-system/pods/istiod-0/portforward"
    assert scope["query_string"] == b"ports=15014"
    assert scope["subprotocols"] == [portforward.PROTOCOL]
    assert dict(scope["headers"])[b"authorization"] == b"Bearer t"  # the kubeconfig's token


def test_the_kubelets_error_channel_is_the_error() -> None:
    app = kubelet([], error=b"error forwarding port 15014 to pod istiod-0: connection refused")
    with pytest.raises(PortForwardError, match=r"^error forwarding port 15014 to pod istiod-0: "
                                               r"connection refused$"):
        forwarded(app, ["/debug/syncz"])


def test_a_refused_port_forward_says_which_permission_is_missing() -> None:
    with pytest.raises(PortForwardError, match=r"403 Forbidden.*pods/portforward.*docs/apply\.md"):
        forwarded(kubelet([], status=403), ["/debug/syncz"])


def test_what_is_not_http_is_said_so() -> None:
    app = kubelet([b"SSH-2.0-OpenSSH_9.2\r\n"])
    with pytest.raises(PortForwardError, match="not HTTP"):
        forwarded(app, ["/debug/syncz"])
