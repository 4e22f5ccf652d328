"""A small HTTPS proxy in front of a test cluster's API server, to make it answer a watch with
410 Gone when the test says so.

It forwards every request to the real API server with the cluster's admin client certificate
(the client in front of it shows a token the proxy ignores), streaming watches line by line.
:meth:`KubeProxy.hold` drops the watch events from then on (as if the watch had fallen behind),
and :meth:`KubeProxy.expire` ends every open watch with the ERROR event an API server sends for
a resourceVersion older than it keeps (``410 Gone``, reason ``Expired``): a client must list
again, and that list holds what the dropped events said.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from testenvrun import Cluster
from tlsfiles import TlsFiles

GONE = {"type": "ERROR", "object": {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "too old resource version", "reason": "Expired", "code": 410}}
HOP = {"connection", "transfer-encoding", "content-length", "content-encoding", "keep-alive",
       "host", "authorization", "accept-encoding"}


class _Watch:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.gone = False


class KubeProxy:
    def __init__(self, cluster: Cluster, tls: TlsFiles) -> None:
        self.cluster = cluster
        self.tls = tls
        self.holding = False
        self.expired = 0  # watches ended with 410
        self._watches: set[_Watch] = set()
        self._lock = threading.Lock()
        self._upstream = cluster.ssl_context()  # its CA and admin client certificate
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.cert), str(tls.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KubeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.expire()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the cluster through the proxy."""
        import base64

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.cluster.name,
            "clusters": [{"name": self.cluster.name, "cluster": {
                "server": f"https://127.0.0.1:{self.port}",
                "certificate-authority-data": base64.b64encode(self.tls.ca.read_bytes()).decode()}}],
            "users": [{"name": "proxied", "user": {"token": "ignored-by-the-proxy"}}],
            "contexts": [{"name": self.cluster.name, "context": {
                "cluster": self.cluster.name, "user": "proxied"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def hold(self) -> None:
        """Drop every watch event from now on."""
        self.holding = True

    def expire(self) -> None:
        """End every open watch with 410 Gone; stop dropping events."""
        with self._lock:
            watches = list(self._watches)
            self.holding = False
        for watch in watches:
            watch.gone = True
            # the handler's thread is blocked reading the upstream stream: end it under it
            stream = watch.response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------------------ forwarding

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP}
        watching = "watch=true" in handler.path.partition("?")[2]
        with httpx.Client(base_url=self.cluster.server, verify=self._upstream,
                          timeout=None) as http, http.stream(
                handler.command, handler.path, content=body, headers=headers) as response:
            handler.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in HOP:
                    handler.send_header(key, value)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            if watching and response.status_code == 200:
                self._stream(handler, response)
            else:
                for chunk in response.iter_bytes():
                    _chunk(handler, chunk)
            _chunk(handler, b"")

    def _stream(self, handler: BaseHTTPRequestHandler, response: Any) -> None:
        watch = _Watch(response)
        with self._lock:
            self._watches.add(watch)
        try:
            for line in response.iter_lines():
                if watch.gone:
                    break
                if not self.holding:
                    _chunk(handler, line.encode() + b"\n")
        except Exception:
            if not watch.gone:
                raise
        finally:
            with self._lock:
                self._watches.discard(watch)
        if watch.gone:
            self.expired += 1
            _chunk(handler, json.dumps(GONE).encode() + b"\n")


def _chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()
