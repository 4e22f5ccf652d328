"""The root of trust is never replaced by accident, against real API servers (k8s-testenv).

What a user would notice: a lost state store that silently mints a new root and pushes it into
every cluster (the whole mesh stops trusting itself), a rotation phase that advances while a
cluster still holds the previous phase's cacerts, a server that pushes a new root of its own.
Each test works in a mesh of its own (the ``meshbridge.dev/mesh`` label) and removes it.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import EXAMPLES, MESH_KINDS, remove_mesh, with_server_credentials, write_docs

from meshbridge.api import create_app
from meshbridge.kube import ReconcileOptions
from meshbridge.pki.bundle import pem_fingerprints
from meshbridge.pki.chain import load_certs
from meshbridge.server.credentials import Credentials
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store
from meshbridge.usecases.pki import material_provider
from meshbridge.usecases.statekey import load_sealer

pytestmark = pytest.mark.k8s

API = "meshbridge.dev/v1alpha1"
CACERTS = "/api/v1/namespaces/istio-system/secrets/cacerts"
_ids = itertools.count()


@pytest.fixture
def mesh(testenv, cli, tmp_path: Path):
    """A unique mesh over three clusters (cacerts on cluster1/2 only at first); pruned after."""
    name = f"rg{next(_ids)}"
    clusters = testenv.clusters(3)
    for c in clusters:  # a cacerts left by another test would be a live root of its own
        with c.client() as http:
            assert http.get(CACERTS).status_code == 404, f"{c.name} holds a stray cacerts"
    kubeconfigs = {f"cluster{i + 1}": c.kubeconfig for i, c in enumerate(clusters)}
    docs = [
        d
        for p in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d["kind"] != "Mesh"
    ]
    docs.append({"apiVersion": API, "kind": "Mesh", "metadata": {"name": name},
                 "spec": {"rootCA": {"keyAlgorithm": "ECDSA-P256"}}})
    docs.append({"apiVersion": API, "kind": "Cluster", "metadata": {"name": "cluster3"},
                 "spec": {"gateway": {"address": "10.0.0.3"}}})
    for d in docs:
        if d["kind"] == "Cluster":
            d["spec"]["kubeconfig"] = {"path": str(kubeconfigs[d["metadata"]["name"]])}
    path = write_docs(tmp_path / "intents" / "mesh.yaml", docs)
    yield {"name": name, "clusters": clusters, "docs": docs, "file": str(path), "tmp": tmp_path}
    remove_mesh(clusters, name)


def live_roots(cluster) -> tuple[str, ...]:
    """SHA-256 of every root in the cluster's live cacerts (empty: no cacerts)."""
    with cluster.client() as http:
        r = http.get(CACERTS)
    if r.status_code == 404:
        return ()
    return pem_fingerprints(base64.b64decode(r.json()["data"]["root-cert.pem"]).decode())


def snapshot(clusters, mesh: str) -> dict[str, Any]:
    """Every object of the mesh in every cluster with its resourceVersion, the live cacerts'
    resourceVersion (whoever owns it) and the namespaces: what "nothing written" keeps."""
    out: dict[str, Any] = {}
    for c in clusters:
        with c.client() as http:
            for prefix, plural in MESH_KINDS:
                found = http.get(f"/{prefix}/{plural}",
                                 params={"labelSelector": f"meshbridge.dev/mesh={mesh}"}).json()
                for it in found.get("items", []):
                    meta = it["metadata"]
                    out[f"{c.name}:{plural}/{meta['namespace']}/{meta['name']}"] = meta["resourceVersion"]
            secret = http.get(CACERTS)
            out[f"{c.name}:cacerts"] = (secret.json()["metadata"]["resourceVersion"]
                                        if secret.status_code == 200 else None)
            out[f"{c.name}:namespaces"] = sorted(
                n["metadata"]["name"] for n in http.get("/api/v1/namespaces").json()["items"])
    return out


def test_a_lost_store_stops_apply_until_pki_import_brings_the_root_back(cli, mesh) -> None:
    clusters, f = mesh["clusters"], mesh["file"]
    first = cli("apply", "-f", f, "--cluster", "cluster1", "--cluster", "cluster2")
    assert first.exit_code == 0, first.stdout + first.stderr
    root = live_roots(clusters[0])
    assert len(root) == 1 and live_roots(clusters[1]) == root and live_roots(clusters[2]) == ()
    backup = mesh["tmp"] / "backup"
    assert cli("pki", "export", "--root", "--dir", str(backup)).exit_code == 0
    before = snapshot(clusters, mesh["name"])

    # the store is lost (with its key file: a new machine, a new checkout)
    lost = str(mesh["tmp"] / "new" / "state.db")
    for args in (["apply"], ["apply", "--dry-run"], ["diff"]):
        refused = cli(*args, "-f", f, "--state", lost)
        assert refused.exit_code == 1, refused.stdout + refused.stderr
        text = " ".join(refused.stderr.split())
        assert "would replace the root of trust of 3 of 3 clusters" in text
        for cluster in ("cluster1", "cluster2"):
            line = re.search(rf"{cluster}: live root sha256:(\w+); new cacerts: root sha256:(\w+)", text)
            assert line, text
            assert line.group(1) == root[0] and line.group(2) != root[0]
        # cluster3 has no cacerts yet: it must not start the mesh's new root either
        line = re.search(r"cluster3: no cacerts yet, cluster1's live root sha256:(\w+); "
                         r"new cacerts: root sha256:(\w+)", text)
        assert line and line.group(1) == root[0] and line.group(2) != root[0], text
        assert "--replace-root" in text and "pki import" in text
    alone = cli("apply", "-f", f, "--state", lost, "--cluster", "cluster3")
    assert alone.exit_code == 1
    assert "cluster3: no cacerts yet, cluster1's live root" in " ".join(alone.stderr.split())
    assert snapshot(clusters, mesh["name"]) == before, "a refused apply wrote to a cluster"
    # ... and nothing to the new store: no status, and no root minted in it
    assert "no apply recorded yet" in cli("status", "--state", lost).stderr
    assert "no root CA yet" in cli("pki", "status", "--state", lost).stdout

    # recovery: the root from the live cacerts, its key from the backup
    with clusters[0].client() as http:
        live_pem = base64.b64decode(http.get(CACERTS).json()["data"]["root-cert.pem"])
    (mesh["tmp"] / "live-root.pem").write_bytes(live_pem)
    imported = cli("pki", "import", "--state", lost, "--cert", str(mesh["tmp"] / "live-root.pem"),
                   "--key", str(backup / "root-ca.key"))
    assert imported.exit_code == 0, imported.stderr
    again = cli("apply", "-f", f, "--state", lost)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert [live_roots(c) for c in clusters] == [root] * 3
    # with the root back, the store is that mesh again: its objects carry the old identity
    assert f"now carries the identity of mesh {mesh['name']!r}" in " ".join(again.stderr.split())


def test_replace_root_is_the_explicit_way_through(cli, mesh) -> None:
    clusters, f = mesh["clusters"], mesh["file"]
    assert cli("apply", "-f", f, "--cluster", "cluster1").exit_code == 0
    old = live_roots(clusters[0])
    other = str(mesh["tmp"] / "other" / "state.db")
    assert cli("apply", "-f", f, "--state", other).exit_code == 1
    # a new root alone does not make this store that mesh: the lost store's objects (all in
    # cluster1) stay another mesh's and are left alone
    before = {k: v for k, v in snapshot(clusters, mesh["name"]).items() if k.startswith("c1:")}
    alone = cli("apply", "-f", f, "--state", other, "--replace-root")
    assert alone.exit_code == 1
    assert "conflict Secret/istio-system/cacerts: this object belongs to another meshbridge mesh"\
        in alone.stderr
    after = snapshot(clusters, mesh["name"])
    assert {k: after[k] for k in before} == before
    with clusters[0].client() as http:
        identity = http.get(CACERTS).json()["metadata"]["labels"]["meshbridge.dev/mesh-id"]
    replaced = cli("apply", "-f", f, "--state", other, "--replace-root",
                   "--adopt-mesh-id", identity)
    assert replaced.exit_code == 0, replaced.stdout + replaced.stderr
    assert f"now carries the identity of mesh {mesh['name']!r}, {identity}" in replaced.stderr
    new = pem_fingerprints(cli("pki", "show", "--root", "--state", other).stdout)
    assert len(new) == 1 and new != old
    assert f"live root sha256:{old[0]}; new cacerts: root sha256:{new[0]}" in replaced.stderr
    assert "--replace-root" in replaced.stderr
    assert [live_roots(c) for c in clusters] == [new] * 3


def _dead(mesh, cluster: str) -> str:
    """The mesh's intents with ``cluster``'s API server unreachable."""
    dead = mesh["tmp"] / f"dead-{cluster}.kubeconfig"
    config = yaml.safe_load(Path(mesh["clusters"][0].kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens there
    dead.write_text(yaml.safe_dump(config))
    docs = list(yaml.safe_load_all(yaml.safe_dump_all(mesh["docs"])))
    for d in docs:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == cluster:
            d["spec"]["kubeconfig"] = {"path": str(dead)}
    return str(write_docs(mesh["tmp"] / "dead" / "mesh.yaml", docs))


def test_rotation_phases_wait_until_apply_saw_every_cluster_hold_the_bundle(cli, mesh) -> None:
    clusters, f = mesh["clusters"], mesh["file"]
    assert cli("apply", "-f", f).exit_code == 0
    old = live_roots(clusters[0])
    begun = cli("pki", "rotate-root", "begin")
    assert begun.exit_code == 0, begun.stderr
    new_subject = load_certs(cli("pki", "show", "--root").stdout)[1].subject
    assert "generation 2" in new_subject.rfc4514_string()

    early = cli("pki", "rotate-root", "advance")
    assert early.exit_code == 1
    for c in ("cluster1", "cluster2", "cluster3"):
        assert f"{c}: holds roots {old[0][:16]} (applied" in early.stderr
    # cluster2 cannot be reached: the others get phase 1's bundle, cluster2 keeps its own
    partial = cli("apply", "-f", _dead(mesh, "cluster2"), "--retries", "1")
    assert partial.exit_code == 1 and "Unreachable" in partial.stdout
    assert live_roots(clusters[0])[0] == old[0] and len(live_roots(clusters[0])) == 2
    assert live_roots(clusters[1]) == old
    still = cli("pki", "rotate-root", "advance")
    assert still.exit_code == 1
    assert "cluster2: holds roots" in still.stderr
    assert "cluster1:" not in still.stderr and "cluster3:" not in still.stderr
    assert cli("pki", "status", "--json").stdout.count('"rotationPhase": 1') == 1

    assert cli("apply", "-f", f).exit_code == 0
    # every cluster holds phase 1's cacerts now; what still holds advance back is istiod, which
    # in these test clusters signs with a CA of its own and never loads cacerts
    # (test_apply_names_an_istiod_that_signs_outside_the_mesh): forced past it
    istiod = cli("pki", "rotate-root", "advance")
    assert istiod.exit_code == 1 and "holds roots" not in istiod.stderr
    assert "not yet this phase's" in istiod.stderr
    assert cli("pki", "rotate-root", "advance", "--force").exit_code == 0
    early = cli("pki", "rotate-root", "finish")
    assert early.exit_code == 1 and "with another intermediate" in early.stderr
    assert cli("apply", "-f", f).exit_code == 0
    istiod = cli("pki", "rotate-root", "finish")
    assert istiod.exit_code == 1 and "with another intermediate" not in istiod.stderr
    finished = cli("pki", "rotate-root", "finish", "--force")
    assert finished.exit_code == 0, finished.stderr
    assert cli("apply", "-f", f).exit_code == 0
    final = live_roots(clusters[0])
    assert len(final) == 1 and final != old
    assert [live_roots(c) for c in clusters] == [final] * 3


def test_apply_names_an_istiod_that_signs_outside_the_mesh(cli, mesh) -> None:
    # k8s-testenv's istiod signs with a CA made for its test cluster, as an istiod installed
    # before meshbridge signs with its own: writing cacerts does not change that
    clusters, f = mesh["clusters"], mesh["file"]
    applied = cli("apply", "-f", f)
    assert applied.exit_code == 0, applied.stderr
    (mesh_root,) = live_roots(clusters[0])
    for i, c in enumerate(clusters[:2], start=1):  # cluster3's Cluster has no kubeconfig
        ca = c.kubeconfig.parent / c.name / "istio-ca" / "root-cert.pem"
        (own,) = pem_fingerprints(ca.read_text())
        said = (f"cluster{i}: istiod signs with a root outside the mesh: it publishes "
                f"sha256:{own} (istio-ca-root-cert), the mesh's is sha256:{mesh_root}")
        assert said in applied.stderr, applied.stderr
        assert said in cli("status").stderr
    restarts = re.findall(r"^  \d\. kubectl --kubeconfig (\S+) -n (\S+) rollout restart (\S+)$",
                          applied.stderr, re.M)
    assert restarts[:2] == [(str(clusters[0].kubeconfig), "istio-system", "deployment/istiod"),
                            (str(clusters[0].kubeconfig), "istio-system",
                             "deployment/istio-ingressgateway")]
    # the namespaces of the cluster's apps: sleep's in cluster1
    assert (str(clusters[0].kubeconfig), "foo", "deployment,statefulset,daemonset") in restarts


def test_a_forced_phase_is_still_caught_before_any_cluster_is_written(cli, mesh) -> None:
    clusters, f = mesh["clusters"], mesh["file"]
    assert cli("apply", "-f", f).exit_code == 0
    old = live_roots(clusters[0])
    assert cli("pki", "rotate-root", "begin").exit_code == 0
    assert cli("pki", "rotate-root", "advance", "--force").exit_code == 0  # phase 1 never applied
    before = snapshot(clusters, mesh["name"])
    refused = cli("apply", "-f", f)
    assert refused.exit_code == 1
    assert "would replace the root of trust of 3 of 3 clusters" in refused.stderr
    assert f"live root sha256:{old[0]}; new cacerts: roots sha256:{old[0]}, sha256:" in refused.stderr
    assert snapshot(clusters, mesh["name"]) == before


def test_the_server_reports_a_foreign_root_and_writes_nothing(cli, mesh, monkeypatch) -> None:
    clusters = mesh["clusters"]
    assert cli("apply", "-f", mesh["file"], "--cluster", "cluster1").exit_code == 0
    old = live_roots(clusters[0])
    before = snapshot(clusters, mesh["name"])
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY", raising=False)
    db = str(mesh["tmp"] / "server" / "server.db")  # a new database: it mints a root of its own
    store = open_store(db)
    token = create_token(store, "ci", "editor")
    headers = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {create_token(store, 'root', 'admin')}"}
    app = create_app(store, material_provider(db), reconcile_interval=30,
                     reconcile_options=ReconcileOptions(retries=1),
                     credentials=Credentials(store, lambda: load_sealer(db, store)))
    try:
        with TestClient(app) as http:
            docs = with_server_credentials(http, admin, mesh["docs"])
            r = http.post("/api/v1/apply", content=yaml.safe_dump_all(docs).encode(),
                          headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 120  # hang detection only
            while True:  # every cluster's run finished (a run under way shows as Pending)
                items = http.get("/api/v1/status", headers=headers).json()["items"]
                if len(items) == 3 and all(s["state"] != "Pending" for s in items):
                    break
                assert time.monotonic() < deadline, items
                time.sleep(0.3)
        assert {s["state"] for s in items} == {"Failed"}
        one = next(s for s in items if s["cluster"] == "cluster1")
        assert "would replace the root of trust of 3 of 3 clusters" in one["error"]
        assert f"cluster1: live root sha256:{old[0]}; new cacerts: root sha256:" in one["error"]
        assert "pki import" in one["error"]
        assert snapshot(clusters, mesh["name"]) == before, "the reconciler wrote to a cluster"
    finally:
        store.close()


def test_with_the_root_key_lost_too_the_live_cacerts_bring_the_mesh_back(cli, mesh) -> None:
    clusters, f = mesh["clusters"], mesh["file"]
    assert cli("apply", "-f", f).exit_code == 0
    old = live_roots(clusters[0])
    before = snapshot(clusters, mesh["name"])
    lost = str(mesh["tmp"] / "new" / "state.db")  # store, key file and root key all gone

    # what kubectl get secret cacerts -n istio-system gives, per cluster
    files = mesh["tmp"] / "live"
    for i, c in enumerate(clusters, start=1):
        with c.client() as http:
            data = http.get(CACERTS).json()["data"]
        for name in ("root-cert.pem", "ca-cert.pem", "ca-key.pem"):
            (files / f"cluster{i}").mkdir(parents=True, exist_ok=True)
            (files / f"cluster{i}" / name).write_bytes(base64.b64decode(data[name]))
    root = cli("pki", "import", "--state", lost, "--without-key",
               "--cert", str(files / "cluster1" / "root-cert.pem"))
    assert root.exit_code == 0, root.stderr
    for i in (1, 2, 3):
        one = cli("pki", "import", "--state", lost, "--cluster", f"cluster{i}",
                  "--cert", str(files / f"cluster{i}" / "ca-cert.pem"),
                  "--key", str(files / f"cluster{i}" / "ca-key.pem"))
        assert one.exit_code == 0, one.stderr
    back = cli("apply", "-f", f, "--state", lost)
    assert back.exit_code == 0, back.stdout + back.stderr
    assert snapshot(clusters, mesh["name"]) == before, "taking the mesh back wrote to a cluster"

    # then onto a root with a key, phase by phase, every cluster applied in between; advance
    # and finish are held back by istiod alone (these test clusters' istiod signs with a CA of
    # its own and never loads cacerts: test_apply_names_an_istiod_that_signs_outside_the_mesh),
    # never by a cluster that does not hold the phase: forced past it
    for phase in ("begin", "advance", "finish"):
        step = cli("pki", "rotate-root", phase, "--state", lost)
        if phase != "begin":
            assert step.exit_code == 1, step.stderr
            assert "not yet this phase's" in step.stderr and "holds roots" not in step.stderr
            assert "with another intermediate" not in step.stderr, step.stderr
            step = cli("pki", "rotate-root", phase, "--state", lost, "--force")
        assert step.exit_code == 0, step.stderr
        applied = cli("apply", "-f", f, "--state", lost)
        assert applied.exit_code == 0, applied.stdout + applied.stderr
    final = live_roots(clusters[0])
    assert len(final) == 1 and final != old
    assert [live_roots(c) for c in clusters] == [final] * 3
