"""The lab's stand-in for the kubelet's streaming endpoint: what carries ``pods/portforward``.

On a real node a client of ``pods/portforward`` (``kubectl port-forward``, istioctl, meshbridge)
reaches a port inside a pod like this. The API server authorizes the caller (``create`` on
``pods/portforward``), reads the pod's node and dials that node's kubelet at the Node's
preferred address and ``status.daemonEndpoints.kubeletEndpoint.Port``, over TLS with its own
client certificate (``--kubelet-client-certificate``), checking the kubelet's serving
certificate against ``--kubelet-certificate-authority``. A WebSocket request of subprotocol
``v4.channel.k8s.io`` is passed through as it is, as ``GET /portForward/{namespace}/{pod}?port=P``
(k8s.io/kubernetes pkg/registry/core/pod/rest/subresources.go). The kubelet
(k8s.io/cri-streaming pkg/streaming/portforward/websocket.go) opens two channels per port, data
(2i) and error (2i+1), every message starting with its channel's number, and sends the port as
uint16 little-endian as the first message of each; the container runtime connects to the port
inside the pod's network namespace and copies bytes both ways; a failure is written as text on
the error channel; when every port's connection is done the WebSocket is closed.

This program is that kubelet for the lab's node: TLS with a certificate of the lab cluster's CA
for its address; the API server's client certificate required (signed by the same CA); the pod
read from the API server (it must be bound to this node and have an IP); and the port reached at
the pod's IP *from 127.0.0.1*, which is how a connection from the pod's own loopback looks to
the process inside it (istiod answers its debug endpoints unauthenticated only then). The lab's
pods that this can reach are those of its control-plane network namespace, where this program
runs: istiod. Only the WebSocket protocol is served (binary ``v4.channel.k8s.io``, or no
subprotocol); a SPDY or plain request is answered 400, as the kubelet answers a request it
cannot upgrade.

Run as ``python -m meshbridge_dev.lab.programs.kubelet --kubeconfig FILE --node NAME --listen
IP:PORT --cert FILE --key FILE --client-ca FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
)
from wsproto.utilities import RemoteProtocolError

PROTOCOL = "v4.channel.k8s.io"
CHUNK = 32 * 1024  # what the runtime's copy moves at a time


def log(msg: str) -> None:
    print(f"kubelet: {msg}", file=sys.stderr, flush=True)


class Refused(Exception):
    """Answered with an HTTP status before any upgrade."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def http_answer(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    reason = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def ports_of(target: str) -> tuple[str, str, list[int]]:
    """(namespace, pod, ports) of ``/portForward/{namespace}/{pod}?port=P[,P...]``."""
    url = urlsplit(target)
    parts = url.path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "portForward":
        raise Refused(404, f"no such path {url.path}")
    ports: list[int] = []
    for value in parse_qs(url.query).get("port", []):
        for item in value.split(","):
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise Refused(400, f"unable to parse {item!r} as a port")
            ports.append(int(item))
    if not ports:
        raise Refused(400, 'query parameter "port" is required')
    return parts[1], parts[2], ports


@dataclass
class Session:
    """One WebSocket: the client's connection, and one TCP connection per forwarded port."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ws: WSConnection
    upstreams: dict[int, asyncio.StreamWriter] = field(default_factory=dict)  # data channel ->

    def send(self, channel: int, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(Message(data=bytes([channel]) + data)))

    async def close(self) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(CloseConnection(code=1000)))
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self.writer.close()


class Kubelet:
    def __init__(self, client: AsyncClient, node: str) -> None:
        self.client = client
        self.node = node

    async def pod_address(self, namespace: str, name: str) -> str:
        try:
            pod = await self.client.get(Pod, name, namespace=namespace)
        except ApiError as e:
            raise Refused(404 if e.status.code == 404 else 500,
                          f"pod {namespace}/{name}: {e.status.message}") from None
        if pod.spec is None or pod.spec.nodeName != self.node:
            raise Refused(404, f"pod {namespace}/{name} is not on node {self.node}")
        address = pod.status.podIP if pod.status else None
        if not address:
            raise Refused(400, f"pod {namespace}/{name} has no IP")
        return str(address)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            request = await self.handshake(reader, ws)
            namespace, pod, ports = ports_of(request.target)
            requested = list(request.subprotocols)
            if requested and PROTOCOL not in requested:
                raise Refused(400, f"requested protocol(s) are not supported: {requested}; "
                                   f"supports {PROTOCOL} (this stand-in speaks WebSocket only)")
            address = await self.pod_address(namespace, pod)
        except Refused as e:
            writer.write(http_answer(e.status, str(e)))
            await writer.drain()
            writer.close()
            return
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            writer.close()
            return
        writer.write(ws.send(AcceptConnection(subprotocol=PROTOCOL if requested else None)))
        session = Session(reader, writer, ws)
        log(f"forwarding {namespace}/{pod} ports {ports}")
        await self.forward(session, f"{namespace}/{pod}", address, ports)

    async def handshake(self, reader: asyncio.StreamReader, ws: WSConnection) -> Request:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            try:
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        return event
            except RemoteProtocolError as e:  # not a WebSocket upgrade (SPDY, plain GET)
                raise Refused(400, f"unable to upgrade: {e}") from None

    async def forward(self, session: Session, pod: str, address: str, ports: list[int]) -> None:
        pumps = []
        for i, port in enumerate(ports):
            data, error = 2 * i, 2 * i + 1
            for channel in (data, error):
                session.send(channel, port.to_bytes(2, "little"))
            try:
                upstream_reader, upstream = await asyncio.open_connection(
                    address, port, local_addr=("127.0.0.1", 0))
            except OSError as e:
                session.send(error, f"error forwarding port {port} to pod {pod}: failed to "
                                    f"connect to localhost:{port} inside the pod: {e}".encode())
                continue
            session.upstreams[data] = upstream
            pumps.append(asyncio.create_task(self.upstream_to_client(session, data,
                                                                     upstream_reader)))
        client = asyncio.create_task(self.client_to_upstreams(session))
        if pumps:
            await asyncio.wait(pumps)
        client.cancel()
        for upstream in session.upstreams.values():
            upstream.close()
        await session.close()

    async def upstream_to_client(self, session: Session, channel: int,
                                 reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                session.send(channel, chunk)
                await session.writer.drain()

    async def client_to_upstreams(self, session: Session) -> None:
        pending = bytearray()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await session.reader.read(CHUNK):
                session.ws.receive_data(data)
                for event in session.ws.events():
                    if isinstance(event, BytesMessage):
                        pending += event.data
                        if not event.message_finished:
                            continue
                        message, pending = bytes(pending), bytearray()
                        upstream = session.upstreams.get(message[0]) if message else None
                        if upstream is not None:
                            upstream.write(message[1:])
                            await upstream.drain()
                    elif isinstance(event, Ping):
                        session.writer.write(session.ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        session.writer.write(session.ws.send(event.response()))
                        for upstream in session.upstreams.values():
                            upstream.close()
                        return
        for upstream in session.upstreams.values():  # the client went away
            upstream.close()


async def serve(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(args.cert, args.key)
    client = AsyncClient(config=KubeConfig.from_file(args.kubeconfig))
    host, _, port = args.listen.rpartition(":")
    kubelet = Kubelet(client, args.node)
    server = await asyncio.start_server(kubelet.handle, host, int(port), ssl=context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(f"serving /portForward on https://{host}:{port} for node {args.node}")
    async with server:
        await stop.wait()
    await client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kubelet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--node", required=True, help="the Node this kubelet stands for")
    ap.add_argument("--listen", required=True, metavar="IP:PORT")
    ap.add_argument("--cert", required=True, help="serving certificate (the cluster's CA)")
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", required=True, help="CA of the API server's client "
                    "certificate")
    asyncio.run(serve(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
