"""Three ``meshbridge serve`` replicas on one real PostgreSQL, reconciling real API servers.

Clients write through all three at once (optimistic concurrency holds, no acknowledged write is
lost); the replica reconciling a cluster is killed (SIGKILL) in the middle of it and another
finishes the work; every cluster converges; the reconcile records show that each cluster was
reconciled by one replica at a time; a restart of every replica keeps everything.

Cluster credentials are registered by an admin through the API (sealed in the store with the
state key every replica is given in ``MESHBRIDGE_STATE_KEY``); the Clusters name them.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import dbfixtures
import httpx
import pgcluster
import pytest
import yaml
from bench.meshgen import generate
from helpers import MESH_KINDS, remove_mesh, wait_for, with_server_credentials

from meshbridge.server.tokens import create_token
from meshbridge.store import open_store

pytestmark = pytest.mark.k8s

pg = dbfixtures.pg
pg_template = dbfixtures.pg_template

MESH = "replicas"
LEASE = 5.0  # seconds: a dead replica's clusters move within about this
STATE_KEY = base64.b64encode(bytes(range(32))).decode()  # the same on every replica
CLIENTS, ROUNDS = 6, 5


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start(db: str, name: str, log: Path, port: int | None = None) -> Replica:
    port = port or pgcluster.free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshbridge.cli.server", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-pki", "--replica-id", name,
             "--lease-seconds", str(LEASE), "--reconcile-interval", "300"],
            env={**os.environ, "MESHBRIDGE_DB": db, "MESHBRIDGE_STATE_KEY": STATE_KEY}, stdout=out, stderr=subprocess.STDOUT,
        )
    replica = Replica(name, port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replica {name} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200:
                return replica
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"replica {name} did not start: {log.read_text()[-3000:]}")


def _stop(replica: Replica) -> None:
    if replica.process.poll() is None:
        replica.process.terminate()
        try:
            replica.process.wait(30)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(10)


def _wait(what: str, predicate: Callable[[], Any], timeout: float = 180.0,
          explain: Callable[[], Any] | None = None) -> Any:
    return wait_for(predicate, what, timeout, explain=explain)


def _mesh(clusters: list[Any]) -> list[dict[str, Any]]:
    """A generated mesh of three clusters (about 400 objects each), each Cluster naming its
    real API server's credentials."""
    docs = generate(clusters=3, servers=150, namespaces=5)
    docs[0]["metadata"]["name"] = MESH
    docs[0]["spec"].pop("rootCA")
    for d in docs:
        if d["kind"] == "Cluster":
            index = int(d["metadata"]["name"][1:])
            d["spec"]["kubeconfig"] = {"path": str(clusters[index].kubeconfig)}
    return docs


@pytest.fixture
def db(pg: pgcluster.Cluster, pg_template: str) -> Iterator[str]:
    name = pg.create_database(pg_template)
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def replicas(db: str, tmp_path: Path) -> Iterator[tuple[dict[str, Replica], Callable[..., Replica]]]:
    running: dict[str, Replica] = {}

    def start(name: str, port: int | None = None) -> Replica:
        running[name] = _start(db, name, tmp_path / f"{name}.log", port)
        return running[name]

    yield running, start
    for replica in running.values():
        _stop(replica)


def _race(urls: list[str], headers: dict[str, str]) -> Counter[int]:
    """CLIENTS threads, each through its own replica, ROUNDS read-modify-write increments of
    one label of one App (retrying on 409)."""
    outcomes: Counter[int] = Counter()
    lock = threading.Lock()
    path = "/api/v1/namespaces/ns0/apps/cli0-0"

    def client(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], headers=headers, timeout=120) as http:
            done = 0
            while done < ROUNDS:
                current = http.get(path).json()
                labels = current["metadata"].setdefault("labels", {})
                labels["count"] = str(int(labels.get("count", "0")) + 1)
                r = http.put(path, json=current)
                with lock:
                    outcomes[r.status_code] += 1
                assert r.status_code in (200, 409), r.text
                done += r.status_code == 200

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def _converged(http: httpx.Client, clusters: list[Any]) -> dict[str, Any] | None:
    """Every cluster's last run Applied at the store's current revision, every object Applied,
    and the clusters holding exactly the objects the server renders for them."""
    revision = http.get("/api/v1/apps", params={"labelSelector": "none-such"}).json()
    current = revision["metadata"]["resourceVersion"]
    status = http.get("/api/v1/status").json()
    items = {s["cluster"]: s for s in status["items"]}
    if set(items) != {"c000", "c001", "c002"}:
        return None
    for item in items.values():
        run = item["lastRun"]
        if not run or run["state"] != "Applied" or run["revision"] != current:
            return None
        # (the test API servers serve no IstioOperator: those stay Pending, as with apply)
        if item["state"] != "Applied" or any(o["state"] != "Applied" for o in item["objects"]
                                             if not o["object"].startswith("IstioOperator/")):
            return None
    for index, name in enumerate(("c000", "c001", "c002")):
        wanted = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                  for o in http.get(f"/api/v1/clusters/{name}/manifests").json()["items"]
                  if o["kind"] != "IstioOperator"}
        if _live(clusters[index]) != wanted:
            return None
    return status


def _summary(http: httpx.Client) -> list[Any]:
    """What a failed wait shows: per cluster its state, error, last run, objects not Applied."""
    return [(s["cluster"], s["state"], s["error"][:300], s["lastRun"], s["lease"],
             [o for o in s["objects"] if o["state"] != "Applied"][:5])
            for s in http.get("/api/v1/status").json()["items"]]


def _live(cluster: Any) -> set[tuple[str, str, str]]:
    found = set()
    with cluster.client() as k:
        for prefix, plural in MESH_KINDS:
            listed = k.get(f"/{prefix}/{plural}", params={"labelSelector": f"meshbridge.dev/mesh={MESH}"})
            for item in listed.json().get("items", []):
                meta = item["metadata"]
                kind = item.get("kind") or listed.json()["kind"].removesuffix("List")
                found.add((kind, meta.get("namespace", ""), meta["name"]))
    return found


def _one_at_a_time(runs: list[dict[str, Any]], killed: str) -> None:
    """Per cluster, runs in start order: each starts after the one before ended, except after a
    run of the killed replica (never ended): then a later lease term started it."""
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_cluster.setdefault(run["cluster"], []).append(run)
    for cluster, mine in by_cluster.items():
        mine.sort(key=lambda r: r["started"])
        for before, after in pairwise(mine):
            if before["finished"] is not None:
                assert after["started"] >= before["finished"], (cluster, before, after)
            else:
                assert before["replica"] == killed, (cluster, before)
                assert after["term"] > before["term"], (cluster, before, after)
            if after["replica"] != before["replica"]:
                assert after["term"] > before["term"], (cluster, before, after)


def test_three_replicas_share_the_api_and_the_clusters(testenv, db, replicas) -> None:
    clusters = testenv.clusters(3)
    running, start = replicas
    store = open_store(db)
    try:
        headers = {"Authorization": f"Bearer {create_token(store, 'ci', 'editor')}"}
        admin = {"Authorization": f"Bearer {create_token(store, 'root', 'admin')}"}
    finally:
        store.close()
    for name in ("r1", "r2", "r3"):
        start(name)
    try:
        with httpx.Client(base_url=running["r1"].url, headers=headers, timeout=120) as http:
            docs = with_server_credentials(http, admin, _mesh(clusters))
            r = http.post("/api/v1/apply", content=yaml.safe_dump_all(docs).encode(),
                          headers={"Content-Type": "application/yaml"})
            assert r.status_code == 200, r.text[:2000]

            # SIGKILL the replica reconciling a cluster, in the middle of its run
            def running_run() -> dict[str, Any] | None:
                runs = http.get("/api/v1/reconciles").json()["items"]
                return next((run for run in runs if run["finished"] is None), None)

            victim = _wait("a reconcile in progress", running_run, timeout=60)
            killed = victim["replica"]
            running[killed].process.send_signal(signal.SIGKILL)
            running[killed].process.wait(10)
            killed_at = time.time()
            survivor = next(r for n, r in running.items() if n != killed)
            http.base_url = httpx.URL(survivor.url)
            runs = http.get("/api/v1/reconciles", params={"cluster": victim["cluster"]}).json()
            assert next(r for r in runs["items"] if r["id"] == victim["id"])["finished"] is None, \
                "the killed replica's run ended before the kill: not mid-reconcile"

            # another replica finishes it, within the lease time (plus the run itself)
            def finished_by_another() -> dict[str, Any] | None:
                items = http.get("/api/v1/reconciles",
                                 params={"cluster": victim["cluster"]}).json()["items"]
                return next((r for r in items if r["id"] > victim["id"] and r["replica"] != killed
                             and r["state"] == "Applied"), None)

            took = _wait("another replica finishing the killed one's cluster", finished_by_another,
                         timeout=LEASE + 120,
                         explain=lambda: _summary(http))
            assert took["term"] > victim["term"]
            _wait("the clusters converging", lambda: _converged(http, clusters), timeout=240,
                  explain=lambda: _summary(http))
            waited = time.time() - killed_at
            del running[killed]

            # clients write through all three (the killed one started again) at once
            start(killed)
            outcomes = _race([r.url for r in running.values()], headers)
            assert outcomes[200] == CLIENTS * ROUNDS
            app = http.get("/api/v1/namespaces/ns0/apps/cli0-0").json()
            assert app["metadata"]["labels"]["count"] == str(CLIENTS * ROUNDS), "a write was lost"
            audit = http.get("/api/v1/audit", params={"kind": "App", "limit": 1000}).json()["items"]
            updates = [(a["beforeResourceVersion"], a["afterResourceVersion"]) for a in audit
                       if a["name"] == "cli0-0" and a["verb"] == "update"]
            assert len(updates) == CLIENTS * ROUNDS
            for (_, after), (before, _) in pairwise(updates):
                assert before == after, "an update did not start from the version before it"
            status = _wait("the clusters converging after the race",
                           lambda: _converged(http, clusters), timeout=240)

            # one replica at a time per cluster, from the reconcile records
            runs = http.get("/api/v1/reconciles", params={"limit": 1000}).json()["items"]
            _one_at_a_time(runs, killed)
            assert {r["replica"] for r in runs} >= {n for n in running if n != killed}
            print(f"takeover after SIGKILL: {waited:.1f} s to converge; "
                  f"{len(runs)} runs by {sorted({r['replica'] for r in runs})}")

            # a restart of every replica keeps everything
            docs = {kind: http.get(f"/api/v1/{kind}").json()["items"]
                    for kind in ("meshes", "clusters", "apps", "inboundintents")}
            manifests = http.get("/api/v1/clusters/c001/manifests",
                                 headers={"Accept": "application/yaml"}).content
            ports = {n: r.port for n, r in running.items()}
            for replica in list(running.values()):
                _stop(replica)
            for n, port in ports.items():
                start(n, port)
            for replica in running.values():
                http.base_url = httpx.URL(replica.url)
                assert {k: http.get(f"/api/v1/{k}").json()["items"] for k in docs} == docs
                assert http.get("/api/v1/clusters/c001/manifests",
                                headers={"Accept": "application/yaml"}).content == manifests
            again = http.get("/api/v1/status").json()
            assert [(s["cluster"], s["lastRun"]["id"]) for s in again["items"]] == \
                [(s["cluster"], s["lastRun"]["id"]) for s in status["items"]]
            assert {r["id"] for r in again["replicas"]} == set(running)
    finally:
        remove_mesh(clusters, MESH)
