"""apply through an HTTP proxy given by the environment (``HTTPS_PROXY``), as kubectl goes.

The proxy is a small HTTP CONNECT tunnel written here: it records every target it tunnels to
and resolves ``kubernetes.default.svc`` (a name in the test API servers' certificates) to
127.0.0.1, a name this machine itself does not resolve. A kubeconfig that names its API server
that way is what a user behind a corporate proxy has: the cluster is reachable only through
the proxy. Loopback API servers are never proxied (kubectl's rule), whatever ``NO_PROXY`` says.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES, remove_mesh, write_docs

pytestmark = pytest.mark.k8s

API_NAME = "kubernetes.default.svc"  # in the test API servers' certificates; not resolvable here
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy")
_ids = itertools.count()


class ConnectProxy:
    """An HTTP proxy that serves CONNECT only, on 127.0.0.1, recording the targets it served."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.targets: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, _, early = head.partition(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            with self._lock:
                self.targets.append(target)
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((self.names.get(host, host), int(port)), 10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                upstream.settimeout(None)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if early:
                    upstream.sendall(early)
                back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                back.start()
                _pump(client, upstream)
                back.join()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    tunnel = ConnectProxy({API_NAME: "127.0.0.1"})
    yield tunnel
    tunnel.close()


@pytest.fixture
def mesh(testenv: Any) -> Iterator[tuple[str, list[Any]]]:
    """A mesh of its own on the session's first two clusters; its objects removed afterwards."""
    name, clusters = f"proxy{next(_ids)}", testenv.clusters(2)
    yield name, clusters
    remove_mesh(clusters, name)


def _port(cluster: Any) -> int:
    return int(cluster.server.rpartition(":")[2])


def _named(cluster: Any, tmp: Path) -> Path:
    """A copy of the cluster's kubeconfig that names its API server ``API_NAME``."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{API_NAME}:{_port(cluster)}"
    path = tmp / f"{cluster.name}-by-name.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _intents(tmp: Path, mesh: str, kubeconfigs: list[Path]) -> Path:
    docs = [d for p in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text())]
    for d in docs:
        if d["kind"] == "Mesh":
            d["metadata"]["name"], d["spec"] = mesh, {}
        if d["kind"] == "Cluster":
            i = int(d["metadata"]["name"].removeprefix("cluster")) - 1
            d["spec"]["kubeconfig"] = {"path": str(kubeconfigs[i])}
    return write_docs(tmp / "intents" / "mesh.yaml", docs)


def _proxied(env: pytest.MonkeyPatch, url: str, no_proxy: str) -> None:
    for var in PROXY_VARS:
        env.delenv(var, raising=False)
    env.setenv("HTTPS_PROXY", url)
    env.setenv("NO_PROXY", no_proxy)


def _landed(clusters: list[Any], mesh: str) -> bool:
    c1, c2 = clusters
    with c1.client(trust_env=False) as http:
        se = http.get("/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/"
                      "httpbin.bar.cluster2")
    with c2.client(trust_env=False) as http:
        gw = http.get("/apis/networking.istio.io/v1beta1/namespaces/istio-system/gateways/"
                      "httpbin-bar-cluster2")
    return (se.status_code == 200 and gw.status_code == 200
            and se.json()["metadata"]["labels"]["meshbridge.dev/mesh"] == mesh)


def test_apply_reaches_api_servers_through_the_proxy_in_https_proxy(
    cli: Any, mesh: tuple[str, list[Any]], proxy: ConnectProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, clusters = mesh
    intents = _intents(tmp_path, name, [_named(c, tmp_path) for c in clusters])
    with monkeypatch.context() as env:
        _proxied(env, proxy.url, no_proxy="")
        result = cli("apply", "-f", str(intents))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Applied" in result.stdout
    assert _landed(clusters, name)
    wanted = {f"{API_NAME}:{_port(c)}" for c in clusters}
    assert set(proxy.targets) == wanted, "the API servers were not reached through the proxy"


def test_no_proxy_sends_a_cluster_around_the_proxy(
    cli: Any, mesh: tuple[str, list[Any]], proxy: ConnectProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NO_PROXY names the API server: meshbridge goes to it directly, and as that name resolves
    only at the proxy, the clusters are unreachable (and nothing is written)."""
    name, clusters = mesh
    intents = _intents(tmp_path, name, [_named(c, tmp_path) for c in clusters])
    with monkeypatch.context() as env:
        _proxied(env, proxy.url, no_proxy=f"example.com,{API_NAME}")
        result = cli("apply", "-f", str(intents), "--retries", "1")
    assert result.exit_code == 1
    assert "Unreachable" in result.stdout + result.stderr
    assert proxy.targets == []
    assert not _landed(clusters, name)


def test_api_servers_on_loopback_are_reached_directly_as_kubectl_does(
    cli: Any, mesh: tuple[str, list[Any]], proxy: ConnectProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kind, minikube and the like give kubeconfigs on 127.0.0.1: a proxy set for the rest of
    the world is not used for them, even with an empty NO_PROXY."""
    name, clusters = mesh
    intents = _intents(tmp_path, name, [c.kubeconfig for c in clusters])
    with monkeypatch.context() as env:
        _proxied(env, proxy.url, no_proxy="")
        result = cli("apply", "-f", str(intents))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert _landed(clusters, name)
    assert proxy.targets == []


def test_a_proxy_that_cannot_reach_the_cluster_makes_it_unreachable_with_its_answer(
    cli: Any, mesh: tuple[str, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, clusters = mesh
    lost = ConnectProxy({})  # does not know the name: answers 502 to every CONNECT
    try:
        intents = _intents(tmp_path, name, [_named(c, tmp_path) for c in clusters])
        with monkeypatch.context() as env:
            _proxied(env, lost.url, no_proxy="")
            env.setenv("COLUMNS", "240")  # the summary table's error column unwrapped
            result = cli("apply", "-f", str(intents), "--retries", "1")
    finally:
        lost.close()
    assert result.exit_code == 1
    out = result.stdout + result.stderr
    assert out.count("Unreachable") == 2 and "502 Bad Gateway" in out, out
    assert len(lost.targets) == 2
