"""HTTP GETs to a port inside a pod, through the API server's ``pods/portforward``.

Why a port-forward: istiod answers its debug endpoints (``/debug/syncz``, ``/debug/configz``)
without a token only to its own loopback, and the API server's service and pod *proxies* cannot
carry a token to it (the API server deletes the caller's ``Authorization`` header after
authenticating it). A port-forward reaches the port as the pod's loopback does, through the
node's kubelet, on every cluster, with one permission (``create`` on ``pods/portforward`` in the
pod's namespace); istioctl and Kiali reach istiod the same way. ``docs/apply.md`` ("Reaching
istiod") has the reasons and the RBAC.

The wire: a WebSocket to ``/api/v1/namespaces/{ns}/pods/{pod}/portforward?ports=P`` with
subprotocol ``v4.channel.k8s.io``, which the API server passes through to the kubelet as it is
(k8s.io/kubernetes pkg/registry/core/pod/rest/subresources.go). The kubelet gives the port two
channels, data (0) and error (1): every message starts with its channel's number, and the first
message of each carries the port as uint16 little-endian (k8s.io/cri-streaming
pkg/streaming/portforward/websocket.go). Bytes on channel 0 are the TCP stream to the pod's
port; text on channel 1 is why the kubelet could not forward; the WebSocket closes when the
connection inside the pod does. This protocol has no half-close, so each call sends its requests
on one HTTP/1.1 connection (h11: keep-alive, the last with ``Connection: close``) and reads the
answers until the pod's side closes.

The WebSocket is httpx2's (built on wsproto), on the very ``httpx2.AsyncClient`` lightkube made
from the kubeconfig: its TLS settings, client certificates, bearer tokens, exec plugins (and
their refresh on 401) and proxies apply to the upgrade request as to every other request. That
client is a lightkube internal (``AsyncClient._client._client``), taken in one place,
:func:`http_client`; ``tests/unit/kube/test_lightkube_seams.py`` fails, naming it, if an upgrade
of lightkube moves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h11
import httpx2
from httpx2.websockets import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
)
from lightkube import AsyncClient

from meshbridge.errors import PortForwardError, Unreachable

__all__ = ["PROTOCOL", "Answer", "get", "http_client"]

PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1
MAX_MESSAGE = 4 * 1024 * 1024  # one frame of the kubelet's copy is 32 KiB; room to spare

# Why the API server refused the upgrade, for the user (its Status body is not readable once
# the upgrade failed).
REFUSED = {
    401: "401 Unauthorized: the credential was not accepted for pods/portforward",
    403: "403 Forbidden: the credential may not create pods/portforward there "
         "(see docs/apply.md, 'Reaching istiod', for the Role it needs)",
    404: "404 Not Found: no such pod",
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def http_client(client: AsyncClient) -> httpx2.AsyncClient:
    """The ``httpx2.AsyncClient`` lightkube made for ``client`` from its kubeconfig.

    lightkube internal: ``AsyncClient._client`` is its ``GenericAsyncClient``, whose
    ``_client`` is the httpx2 client every lightkube request goes through (lightkube's own
    ``exec`` opens its WebSockets on it too). pyproject.toml pins lightkube's minor.
    """
    generic: Any = client._client  # internal: see the docstring
    http = getattr(generic, "_client", None)
    if not isinstance(http, httpx2.AsyncClient):
        raise TypeError("lightkube's AsyncClient no longer holds an httpx2.AsyncClient at "
                        "_client._client: kube/portforward.py http_client needs another way")
    return http


class _Tunnel:
    """The data channel of one forwarded port, as a byte stream; the error channel kept."""

    def __init__(self, ws: AsyncWebSocketSession, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.started = {DATA: False, ERROR: False}  # their first message, the port, was read
        self.error = bytearray()
        self.closed = False

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(bytes([DATA]) + data)

    async def receive(self) -> bytes:
        """The next bytes from the pod's port; b"" once the kubelet closed the stream (with the
        error channel's text raised, if it wrote any)."""
        while not self.closed:
            try:
                message = await self.ws.receive_bytes(timeout=self.timeout)
            except WebSocketDisconnect:
                self.closed = True
                break
            except TimeoutError:
                raise PortForwardError(f"no answer within {self.timeout:g}s") from None
            if not message:
                continue
            channel, payload = message[0], message[1:]
            if channel not in self.started:
                continue  # a channel of another port: none was asked for
            if not self.started[channel]:
                self.started[channel] = True  # the port, little-endian: nothing to keep
                continue
            if channel == ERROR:
                self.error += payload
            elif payload:
                return payload
        if self.error:
            raise PortForwardError(self.error.decode(errors="replace").strip())
        return b""


async def _exchange(conn: h11.Connection, tunnel: _Tunnel, path: str, last: bool) -> Answer:
    headers = [("Host", "localhost"), ("Accept", "application/json")]
    if last:
        headers.append(("Connection", "close"))
    await tunnel.send(conn.send(h11.Request(method="GET", target=path, headers=headers))
                      + conn.send(h11.EndOfMessage()))
    status, body = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await tunnel.receive())
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Answer(status, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise PortForwardError(f"GET {path}: the connection closed before an answer")


async def get(
    client: AsyncClient, namespace: str, pod: str, port: int, paths: list[str], timeout: float
) -> list[Answer]:
    """``GET`` each of ``paths`` on ``port`` inside the pod, on one forwarded connection, in
    order. PortForwardError when the forward is refused or fails, or what answers is not
    HTTP; Unreachable when the API server cannot be reached."""
    try:
        return await _forwarded(client, namespace, pod, port, paths, timeout)
    except BaseExceptionGroup as group:  # the WebSocket's task group wraps what its body raised
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        mapped = _mapped(error, port)
        if mapped is None:
            raise
        raise mapped from error
    except Exception as exc:
        mapped = _mapped(exc, port)
        if mapped is None:
            raise
        raise mapped from exc


def _mapped(exc: BaseException, port: int) -> Exception | None:
    """A failure as meshbridge reports it, or None when it is not one of the expected ones."""
    if isinstance(exc, PortForwardError | Unreachable):
        return exc
    if isinstance(exc, WebSocketUpgradeError):
        code = exc.response.status_code
        return PortForwardError(REFUSED.get(code, f"{code}: the port-forward was refused"))
    if isinstance(exc, h11.ProtocolError):
        return PortForwardError(f"what answers on port {port} is not HTTP: {exc}")
    if isinstance(exc, HTTPXWSException):
        return PortForwardError(f"the port-forward broke: {type(exc).__name__}")
    if isinstance(exc, httpx2.TransportError | OSError):
        return Unreachable((str(exc) or type(exc).__name__).splitlines()[0][:300])
    return None


async def _forwarded(
    client: AsyncClient, namespace: str, pod: str, port: int, paths: list[str], timeout: float
) -> list[Answer]:
    url = f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward"
    async with http_client(client).websocket(
        url,
        params={"ports": str(port)},
        subprotocols=[PROTOCOL],
        max_message_size_bytes=MAX_MESSAGE,
        keepalive_ping_interval_seconds=None,
        timeout=timeout,
    ) as ws:
        tunnel = _Tunnel(ws, timeout)
        conn = h11.Connection(h11.CLIENT)
        answers = []
        for i, path in enumerate(paths):
            answers.append(await _exchange(conn, tunnel, path, last=i == len(paths) - 1))
            if i < len(paths) - 1:
                conn.start_next_cycle()
        return answers
