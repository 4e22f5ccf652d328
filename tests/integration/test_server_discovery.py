"""The server keeps discovered placements current (real API servers, the app in-process with its
reconciler and watches running): a workload that appears is routed to without anyone applying;
an API server restarted in the middle of the watch, and down meanwhile, keeps its placements
(nothing dropped) and is watched again; the grace period keeps a vanished App's routes, a
return within it changes nothing, and after it they go; a watch ended with 410 Gone lists
again and sees what it missed. Waits are hang detection (generous bounds), not timing checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import remove_mesh, wait_for, with_server_credentials
from kubeproxy import KubeProxy
from livemesh import API, next_mesh
from testenvrun import Cluster
from tlsfiles import make_tls_files
from workloads import serve, unserve

from meshbridge.api import create_app
from meshbridge.kube import ReconcileOptions
from meshbridge.server.credentials import Credentials
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store
from meshbridge.usecases.statekey import load_sealer

pytestmark = pytest.mark.k8s

BOUND = 90.0  # seconds: far past what any step takes, only so that a hang fails
GATEWAY = {"cluster1": "10.2.0.1", "cluster2": "10.2.0.2", "cluster3": "10.2.0.3"}


def _docs(mesh: str, ns: str, kubeconfigs: dict[str, Path], grace: str) -> list[dict[str, Any]]:
    """sleep runs in cluster3 (written); httpbin, discovered, may run in cluster1 or 2."""
    docs: list[dict[str, Any]] = [{"apiVersion": API, "kind": "Mesh", "metadata": {"name": mesh},
                                   "spec": {"discovery": {"gracePeriod": grace}}}]
    for name, path in kubeconfigs.items():
        docs.append({"apiVersion": API, "kind": "Cluster",
                     "metadata": {"name": name, "labels": {"serves": str(name != "cluster3")}},
                     "spec": {"gateway": {"address": GATEWAY[name]},
                              "kubeconfig": {"path": str(path)}}})
    return [*docs,
            {"apiVersion": API, "kind": "App", "metadata": {"name": "sleep", "namespace": ns},
             "spec": {"clusters": ["cluster3"]}},
            {"apiVersion": API, "kind": "App", "metadata": {"name": "httpbin", "namespace": ns},
             "spec": {"discover": {}, "clusterSelector": {"matchLabels": {"serves": "True"}}}},
            {"apiVersion": API, "kind": "InboundIntent",
             "metadata": {"name": "httpbin", "namespace": ns},
             "spec": {"app": "httpbin", "port": 8000, "protocol": "HTTP", "failover": {},
                      "clients": [{"app": "sleep"}]}}]


class Served:
    """The in-process server and what the tests read of it."""

    def __init__(self, http: TestClient, headers: dict[str, str], client: Cluster, ns: str):
        self.http, self.headers, self.client, self.ns = http, headers, client, ns

    def placements(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get("/api/v1/placements", headers=self.headers).json()
        return answer

    def placed(self) -> dict[str, str | None]:
        """cluster -> None (running) or since when it is gone."""
        return {i["cluster"]: i["gone"] for i in self.placements()["items"]}

    def watch(self, cluster: str) -> dict[str, Any]:
        return next((c for c in self.placements()["clusters"] if c["cluster"] == cluster), {})

    def audit(self) -> list[tuple[str, str]]:
        items = self.http.get("/api/v1/audit?kind=Placement&limit=500",
                              headers=self.headers).json()["items"]
        return [(e["verb"], e["name"]) for e in items]

    def entry(self) -> tuple[list[str], str]:
        """The failover ServiceEntry sleep's namespace holds in cluster3: its endpoints'
        addresses, and its resourceVersion ('' when there is none)."""
        path = (f"/apis/networking.istio.io/v1beta1/namespaces/{self.ns}/serviceentries/"
                f"httpbin.{self.ns}.mesh.internal")
        with self.client.client() as k:
            found = k.get(path)
        if found.status_code == 404:
            return [], ""
        body = found.json()
        return sorted(e["address"] for e in body["spec"]["endpoints"]), \
            body["metadata"]["resourceVersion"]

    def routes(self, *clusters: str) -> None:
        want = sorted(GATEWAY[c] for c in clusters)
        wait_for(lambda: self.entry()[0] == want, f"cluster3 routes to {clusters}", BOUND,
                 explain=lambda: f"{self.entry()} {self.placements()}")


@contextmanager
def served(testenv: Any, tmp_path: Path, suffix: str, grace: str,
           kubeconfigs: dict[str, Path] | None = None) -> Iterator[tuple[Served, list[Cluster]]]:
    """The server in-process over the session's three clusters (``kubeconfigs`` may replace
    theirs), a mesh of its own; its objects and workloads removed at the end."""
    clusters = testenv.clusters(3)
    mesh = next_mesh()
    ns = f"{mesh}-{suffix}"
    given = {f"cluster{i + 1}": c.kubeconfig for i, c in enumerate(clusters)}
    db = str(tmp_path / "server.db")
    store = open_store(db)
    headers = {"Authorization": f"Bearer {create_token(store, 'ci', 'editor')}"}
    admin = {"Authorization": f"Bearer {create_token(store, 'root', 'admin')}"}
    app = create_app(store, reconcile_interval=60, lease_ttl=6,
                     reconcile_options=ReconcileOptions(retries=1, timeout=5),
                     credentials=Credentials(store, lambda: load_sealer(db, store)))
    try:
        with TestClient(app) as http:
            docs = _docs(mesh, ns, {**given, **(kubeconfigs or {})}, grace)
            docs = with_server_credentials(http, admin, docs)
            r = http.post("/api/v1/apply", content=yaml.safe_dump_all(docs).encode(),
                          headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == 200, r.text
            yield Served(http, headers, clusters[2], ns), clusters
    finally:
        store.close()
        if not _up(clusters[0]):
            testenv.apiserver("start", "c1")
        remove_mesh(clusters, mesh)
        for c in clusters[:2]:
            unserve(c, ns, "httpbin")


def test_the_server_follows_placements_through_a_restart_and_the_grace_period(
    testenv, tmp_path: Path
) -> None:
    with served(testenv, tmp_path, "w", "20s") as (server, (c1, c2, _)):
        ns = server.ns
        serve(c1, ns, "httpbin", True)  # nobody applies: the watch sees it
        server.routes("cluster1")

        # cluster1's API server restarted in the middle of the watch, down meanwhile
        testenv.apiserver("stop", "c1")
        wait_for(lambda: server.watch("cluster1").get("state") == "failing",
                 "cluster1's watch failing", BOUND)
        serve(c2, ns, "httpbin", True)
        server.routes("cluster1", "cluster2")  # cluster1 cannot be read: kept
        assert server.placed() == {"cluster1": None, "cluster2": None}
        testenv.apiserver("start", "c1")
        wait_for(lambda: server.watch("cluster1").get("state") == "watching",
                 "cluster1 watched again", BOUND)
        assert server.placed() == {"cluster1": None, "cluster2": None}  # still the truth
        unserve(c1, ns, "httpbin")  # and a change after the restart is seen
        server.routes("cluster2")

        # gone from every cluster: kept for the grace period, unchanged in cluster3
        _, version = server.entry()
        unserve(c2, ns, "httpbin")
        wait_for(lambda: server.placed().get("cluster2"), "httpbin marked gone", BOUND)
        assert server.entry() == (["10.2.0.2"], version)
        serve(c2, ns, "httpbin", True)  # back within the period: nothing changes
        wait_for(lambda: ("back", "httpbin@cluster2") in server.audit(), "back", BOUND)
        assert server.entry() == (["10.2.0.2"], version)
        unserve(c2, ns, "httpbin")  # gone again, for good: after the period, no route
        server.routes()
        assert [v for v, name in server.audit() if name == "httpbin@cluster2"] == [
            "found", "gone", "back", "gone", "dropped"]
        assert [v for v, name in server.audit() if name == "httpbin@cluster1"] == [
            "found", "left"]


def _up(cluster: Cluster) -> bool:
    try:
        with cluster.client() as k:
            return k.get("/readyz").status_code == 200
    except Exception:
        return False


def test_a_watch_ended_with_410_gone_lists_again_and_sees_what_it_missed(
    testenv, tmp_path: Path
) -> None:
    c1 = testenv.clusters(3)[0]
    with KubeProxy(c1, make_tls_files(tmp_path / "proxy-tls")) as proxy:
        proxied = {"cluster1": proxy.kubeconfig(tmp_path / "proxied.kubeconfig")}
        with served(testenv, tmp_path, "g", "5m", proxied) as (server, (_, c2, _)):
            serve(c1, server.ns, "httpbin", True)
            server.routes("cluster1")
            serve(c2, server.ns, "httpbin", True)
            server.routes("cluster1", "cluster2")
            proxy.hold()  # cluster1's watch events are lost from here on...
            unserve(c1, server.ns, "httpbin")
            proxy.expire()  # ...and the watch is told its version is too old
            server.routes("cluster2")  # the new list said what the events did not
            assert proxy.expired >= 1
            assert server.watch("cluster1")["relists"] >= 1
            assert ("left", "httpbin@cluster1") in server.audit()
