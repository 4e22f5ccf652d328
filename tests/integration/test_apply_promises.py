"""What apply promises about objects that are not its own, against real API servers.

Ownership is the mesh identity of a state store, so two stores never prune or claim each
other's objects (even when both meshes are "default"), and an upgraded store adopts its own
objects labelled the old way, once. Writes touch only what meshbridge saw when it read the
cluster: a create never forces, an update names the uid it saw, a delete carries the uid and
resourceVersion. Drift is what meshbridge manages, not fields other managers added. Namespaces
apply creates get Istio's injection label.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import MESH_KINDS, remove_mesh, store_from_before_identities, write_docs
from livemesh import API, apply_docs, example_for, mesh_docs, point_at

from meshbridge.kube import reconcile

pytestmark = pytest.mark.k8s

MESH_ID = "meshbridge.dev/mesh-id"
DR = "/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules/httpbin.bar.cluster2"
SE = "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2"
_ids = itertools.count()


def _objects(clusters, mesh: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every object labelled ``meshbridge.dev/mesh: mesh``: (cluster, plural, ns, name) ->
    uid, resourceVersion and mesh id."""
    out = {}
    for cluster in clusters:
        with cluster.client() as http:
            for prefix, plural in MESH_KINDS:
                found = http.get(f"/{prefix}/{plural}", params={"labelSelector": f"meshbridge.dev/mesh={mesh}"})
                for item in found.json().get("items", []):
                    meta = item["metadata"]
                    out[(cluster.name, plural, meta["namespace"], meta["name"])] = {
                        "uid": meta["uid"], "rv": meta["resourceVersion"],
                        "id": (meta.get("labels") or {}).get(MESH_ID)}
    return out


def _get(cluster, path: str) -> dict[str, Any]:
    with cluster.client() as http:
        r = http.get(path)
        assert r.status_code == 200, r.text
        return r.json()


def _ensure_namespace(cluster, name: str) -> None:
    with cluster.client() as http:
        http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _after_listing(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` (what someone else does) once, right after meshbridge listed a cluster."""
    original = reconcile.ClusterReconciler._listing
    done: list[bool] = []

    async def listing_then_action(self, versions):
        listed = await original(self, versions)
        if not done:
            done.append(True)
            await asyncio.to_thread(action)
        return listed

    monkeypatch.setattr(reconcile.ClusterReconciler, "_listing", listing_then_action)


# ---------------------------------------------------------------------------- ownership


def test_two_stores_that_leave_mesh_out_never_touch_each_others_objects(cli, testenv, tmp_path: Path) -> None:
    clusters = testenv.clusters(3)
    kubeconfigs = {f"cluster{i + 1}": c.kubeconfig for i, c in enumerate(clusters)}
    ns = f"own{next(_ids)}"
    a_docs = [d for d in example_for("sleep-httpbin", "unused", kubeconfigs) if d["kind"] != "Mesh"]
    b_docs = [*point_at([
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": f"cluster{i}"},
         "spec": {"gateway": {"address": f"10.8.0.{i}"}}} for i in (1, 2)
    ], kubeconfigs),
        {"apiVersion": API, "kind": "App", "metadata": {"name": "client", "namespace": ns},
         "spec": {"clusters": ["cluster1"]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "server", "namespace": ns},
         "spec": {"clusters": ["cluster2"]}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": "server", "namespace": ns},
         "spec": {"app": "server", "port": 80, "clients": [{"app": "client"}]}},
    ]
    a = ("--state", str(tmp_path / "a" / "state.db"))
    b = ("--state", str(tmp_path / "b" / "state.db"))
    a_src = write_docs(tmp_path / "a" / "mesh.yaml", a_docs)
    b_src = write_docs(tmp_path / "b" / "mesh.yaml", b_docs)
    try:
        first = cli("apply", "-f", str(a_src), *a)
        assert first.exit_code == 0, first.stdout + first.stderr
        theirs = _objects(clusters, "default")
        assert theirs

        # B's root is not the one the clusters trust: refused before anything is written
        refused = cli("apply", "-f", str(b_src), *b)
        assert refused.exit_code == 1 and "would replace the root of trust" in refused.stderr
        assert _objects(clusters, "default") == theirs
        # past that guard (--replace-root), the ownership one: both meshes want
        # istio-system/cacerts; B may not take A's, nor prune any of A's objects
        second = cli("apply", "-f", str(b_src), "--replace-root", *b)
        now = _objects(clusters, "default")
        assert {k: v for k, v in now.items() if k in theirs} == theirs, "B touched A's objects"
        assert second.exit_code == 1, second.stdout + second.stderr
        assert ("conflict Secret/istio-system/cacerts: this object belongs to another meshbridge "
                "mesh ('default', meshbridge.dev/mesh-id ") in second.stderr
        assert "not managed by meshbridge" not in second.stderr
        assert all(o["id"] for o in theirs.values())
        mine = {k: v for k, v in now.items() if k not in theirs}
        assert mine and {v["id"] for v in mine.values()} - {v["id"] for v in theirs.values()}
        assert len({v["id"] for v in mine.values()}) == 1

        # B asked for A's objects by name, even with --force-conflicts: refused, untouched
        both = write_docs(tmp_path / "b" / "apps.yaml",
                          [d for d in a_docs if d["kind"] in ("App", "InboundIntent")])
        third = cli("apply", "-f", str(b_src), "-f", str(both), "--force-conflicts",
                    "--replace-root", *b)
        assert third.exit_code == 1
        assert ("conflict DestinationRule/foo/httpbin.bar.cluster2: this object belongs to "
                "another meshbridge mesh") in third.stderr
        assert {k: v for k, v in _objects(clusters, "default").items() if k in theirs} == theirs

        # and A, applying again, leaves B's objects alone and writes nothing of its own
        again = cli("apply", "-f", str(a_src), *a)
        assert again.exit_code == 0, again.stdout + again.stderr
        assert _objects(clusters, "default") == {**theirs, **{k: v for k, v in now.items() if k in mine}}
    finally:
        remove_mesh(clusters, "default")


def test_an_upgraded_store_adopts_its_own_old_objects_once(cli, mesh, tmp_path: Path) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    clusters = mesh["clusters"]
    # as a meshbridge from before mesh identities left them: labelled with the mesh's name only
    old = _objects(clusters, mesh["name"])
    by_name = {c.name: c for c in clusters}
    for (cluster, plural, ns, name) in old:
        prefix = {p: pre for pre, p in MESH_KINDS}[plural]
        with by_name[cluster].client() as http:
            r = http.patch(f"/{prefix}/namespaces/{ns}/{plural}/{name}",
                           content=json.dumps({"metadata": {"labels": {MESH_ID: None}}}),
                           headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
    old = _objects(clusters, mesh["name"])
    assert old and not any(o["id"] for o in old.values())
    store_from_before_identities(os.environ["MESHBRIDGE_STATE"], ["cluster1", "cluster2"])

    # another store of a mesh of the same name does not take them
    src = write_docs(mesh["tmp"] / "intents" / "mesh.yaml", docs)
    other = cli("apply", "-f", str(src), "--state", str(tmp_path / "other" / "state.db"),
                "--replace-root")  # past the root guard, to the ownership one
    assert other.exit_code == 1
    assert f"this object belongs to meshbridge mesh '{mesh['name']}' as an older meshbridge labelled it" in other.stderr
    assert _objects(clusters, mesh["name"]) == old

    # the store that made them adopts them: the same objects (same uids, none added or
    # deleted), labelled with its identity now
    upgraded = apply_docs(cli, mesh["tmp"], docs)
    assert upgraded.exit_code == 0, upgraded.stdout + upgraded.stderr
    adopted = _objects(clusters, mesh["name"])
    assert {k: v["uid"] for k, v in adopted.items()} == {k: v["uid"] for k, v in old.items()}
    ids = {v["id"] for v in adopted.values()}
    assert len(ids) == 1 and None not in ids
    again = apply_docs(cli, mesh["tmp"], docs)
    assert again.exit_code == 0
    assert _objects(clusters, mesh["name"]) == adopted

    # once: an object labelled the old way that shows up later is not this store's
    late = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "late", "namespace": "foo",
                         "labels": {"app.kubernetes.io/managed-by": "meshbridge", "meshbridge.dev/mesh": mesh["name"]}},
            "spec": {"host": "late.example"}}
    with clusters[0].client() as http:
        assert http.post("/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules", json=late).status_code == 201
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    assert _get(clusters[0], "/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules/late")


# ----------------------------------------------------------------- writes and preconditions


def test_an_object_someone_creates_after_the_list_is_not_taken_over(cli, mesh, monkeypatch) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    c1 = mesh["clusters"][0]
    _ensure_namespace(c1, "foo")
    base = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "httpbin.bar.cluster2", "namespace": "foo"}}
    different = {**base, "spec": {"host": "httpbin.bar.cluster2", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}}
    same = {**base, "spec": {"host": "httpbin.bar.cluster2", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                             "exportTo": ["."]}}
    for theirs in (different, same):
        def create(obj=theirs) -> None:
            with c1.client() as http:
                r = http.post("/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules", json=obj)
                assert r.status_code == 201, r.text
        _after_listing(monkeypatch, create)
        try:
            result = apply_docs(cli, mesh["tmp"], docs, "--cluster", "cluster1")
            assert result.exit_code == 1, result.stdout + result.stderr
            assert ("conflict DestinationRule/foo/httpbin.bar.cluster2: an object of this name was "
                    "created by someone else after meshbridge read the cluster") in result.stderr
            live = _get(c1, DR)
            assert live["spec"] == theirs["spec"]
            assert not (live["metadata"].get("labels") or {}), "meshbridge labelled someone's object"
            assert {m["manager"] for m in live["metadata"]["managedFields"]} == {"python-httpx"}
        finally:
            with c1.client() as http:
                http.delete(DR)


def test_an_object_replaced_after_the_list_is_neither_updated_nor_deleted(cli, mesh, monkeypatch) -> None:
    ns = f"r{mesh['name']}"
    docs = mesh_docs(mesh["name"]) + point_at([
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": f"cluster{i}"},
         "spec": {"gateway": {"address": f"10.9.1.{i}"}}} for i in (1, 2)
    ], mesh["kubeconfigs"]) + [
        {"apiVersion": API, "kind": "App", "metadata": {"name": "client", "namespace": ns}, "spec": {"clusters": ["cluster1"]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "a", "namespace": ns}, "spec": {"clusters": ["cluster2"]}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": "a", "namespace": ns},
         "spec": {"app": "a", "port": 80, "clients": [{"app": "client"}]}},
    ]
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    c1 = mesh["clusters"][0]
    base = f"/apis/networking.istio.io/v1beta1/namespaces/{ns}"
    host = f"a.{ns}.cluster2"

    def replace(plural: str, spec: dict[str, Any]) -> Callable[[], None]:
        def act() -> None:  # someone deletes meshbridge's object and makes their own
            with c1.client() as http:
                assert http.delete(f"{base}/{plural}/{host}").status_code == 200
                mine = {"apiVersion": "networking.istio.io/v1beta1", "kind": plural[:-1],
                        "metadata": {"name": host, "namespace": ns}, "spec": spec}
                mine["kind"] = {"serviceentries": "ServiceEntry", "destinationrules": "DestinationRule"}[plural]
                r = http.post(f"{base}/{plural}", json=mine)
                assert r.status_code == 201, r.text
        return act

    theirs_se = {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                 "ports": [{"number": 80, "name": "tcp", "protocol": "TCP"}]}
    docs[-1]["spec"]["port"] = 81  # the ServiceEntry is to be updated...
    _after_listing(monkeypatch, replace("serviceentries", theirs_se))
    result = apply_docs(cli, mesh["tmp"], docs, "--cluster", "cluster1")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"ServiceEntry/{ns}/{host}: deleted or replaced after meshbridge read the cluster" in result.stderr
    assert _get(c1, f"{base}/serviceentries/{host}")["spec"] == theirs_se

    with c1.client() as http:
        assert http.delete(f"{base}/serviceentries/{host}").status_code == 200
    assert apply_docs(cli, mesh["tmp"], docs, "--cluster", "cluster1").exit_code == 0
    theirs_dr = {"host": host}
    del docs[-1]  # ...and, with the intent gone, the DestinationRule is to be deleted
    _after_listing(monkeypatch, replace("destinationrules", theirs_dr))
    result = apply_docs(cli, mesh["tmp"], docs, "--cluster", "cluster1")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert (f"failed DestinationRule/{ns}/{host}: changed or replaced after meshbridge read the "
            "cluster") in result.stderr
    assert _get(c1, f"{base}/destinationrules/{host}")["spec"] == theirs_dr
    with c1.client() as http:
        assert http.get(f"{base}/serviceentries/{host}").status_code == 404  # deleted as planned
        http.delete(f"{base}/destinationrules/{host}")


# ------------------------------------------------------------------------------- drift


def test_a_field_another_manager_adds_is_not_drift(cli, mesh) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    c1 = mesh["clusters"][0]
    src = write_docs(mesh["tmp"] / "intents" / "mesh.yaml", docs)

    def edit(patch: dict[str, Any]) -> None:  # as `kubectl edit` writes
        with c1.client() as http:
            r = http.patch(DR, content=json.dumps(patch), params={"fieldManager": "kubectl-edit"},
                           headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text

    edit({"metadata": {"labels": {"team": "payments"}},
          "spec": {"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}})
    edited = _get(c1, DR)["metadata"]["resourceVersion"]
    diff = cli("diff", "-f", str(src))
    assert diff.exit_code == 0, diff.stdout
    again = apply_docs(cli, mesh["tmp"], docs)
    assert again.exit_code == 0
    live = _get(c1, DR)
    assert live["metadata"]["resourceVersion"] == edited, "apply rewrote an object in sync"
    assert live["spec"]["trafficPolicy"]["connectionPool"] == {"tcp": {"maxConnections": 7}}

    # a value meshbridge sets is drift: diff shows that change only, apply puts it back
    edit({"spec": {"trafficPolicy": {"tls": {"mode": "DISABLE"}}}})
    diff = cli("diff", "-f", str(src))
    assert diff.exit_code == 1
    assert "update DestinationRule/foo/httpbin.bar.cluster2  (drift" in diff.stdout
    assert "-      mode: DISABLE" in diff.stdout and "+      mode: ISTIO_MUTUAL" in diff.stdout
    assert "maxConnections" not in diff.stdout and "payments" not in diff.stdout
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    live = _get(c1, DR)
    assert live["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"},
                                             "connectionPool": {"tcp": {"maxConnections": 7}}}
    assert cli("diff", "-f", str(src)).exit_code == 0


# --------------------------------------------------------------------------- namespaces


def test_namespaces_apply_creates_get_sidecar_injection(cli, mesh, tmp_path: Path) -> None:
    made, existing, quiet = (f"{p}{mesh['name']}" for p in ("inj", "keep", "quiet"))
    c1 = mesh["clusters"][0]
    with c1.client() as http:
        r = http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": existing, "labels": {"team": "x"}}})
        assert r.status_code == 201, r.text

    def mesh_with(*namespaces: str, **istio: Any) -> list[dict[str, Any]]:
        docs = [{"apiVersion": API, "kind": "Mesh", "metadata": {"name": mesh["name"]},
                 "spec": {"istio": istio} if istio else {}}]
        docs += point_at([{"apiVersion": API, "kind": "Cluster", "metadata": {"name": f"cluster{i}"},
                            "spec": {"gateway": {"address": f"10.9.2.{i}"}}} for i in (1, 2)],
                          mesh["kubeconfigs"])
        docs.append({"apiVersion": API, "kind": "App", "metadata": {"name": "s", "namespace": "srv" + mesh["name"]},
                     "spec": {"clusters": ["cluster2"]}})
        docs.append({"apiVersion": API, "kind": "InboundIntent",
                     "metadata": {"name": "s", "namespace": "srv" + mesh["name"]},
                     "spec": {"app": "s", "port": 80,
                              "clients": [{"app": "c", "namespace": ns} for ns in namespaces]}})
        docs += [{"apiVersion": API, "kind": "App", "metadata": {"name": "c", "namespace": ns},
                  "spec": {"clusters": ["cluster1"]}} for ns in namespaces]
        return docs

    result = apply_docs(cli, mesh["tmp"], mesh_with(made, existing))
    assert result.exit_code == 0, result.stdout + result.stderr
    labels = _get(c1, f"/api/v1/namespaces/{made}")["metadata"]["labels"]
    assert labels["istio-injection"] == "enabled"
    assert labels["app.kubernetes.io/created-by"] == "meshbridge"
    kept = _get(c1, f"/api/v1/namespaces/{existing}")["metadata"]["labels"]
    assert "istio-injection" not in kept and kept["team"] == "x"

    result = apply_docs(cli, mesh["tmp"], mesh_with(made, existing, quiet, sidecarInjection=False))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "istio-injection" not in _get(c1, f"/api/v1/namespaces/{quiet}")["metadata"]["labels"]
    assert _get(c1, f"/api/v1/namespaces/{made}")["metadata"]["labels"]["istio-injection"] == "enabled"
