"""The placement commands without clusters: render from a placement file or the one the
state store recorded (and says which; the same placement, the same bytes), discover on
clusters it cannot read (exit 1, nothing dropped), and rbac. Against real API servers:
tests/integration/test_discovery.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import EXAMPLES, read_tree

from meshbridge import compile as mbcompile
from meshbridge.kube.placement import Reading
from meshbridge.loading import Source, load
from meshbridge.store import open_store
from meshbridge.usecases import placement

EXAMPLE = str(EXAMPLES / "discovered")
HTTPBIN, SLEEP = ("bar", "httpbin"), ("foo", "sleep")


def placement_file(tmp_path: Path, httpbin: list[str], sleep: list[str]) -> Path:
    docs = [{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "App",
             "metadata": {"name": name, "namespace": ns}, "spec": {"clusters": clusters}}
            for (ns, name), clusters in ((HTTPBIN, httpbin), (SLEEP, sleep))]
    path = tmp_path / "placement.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_render_from_a_placement_file_routes_and_says_so(cli, tmp_path: Path) -> None:
    given = placement_file(tmp_path, ["cluster2"], ["cluster1"])
    result = cli("render", "-f", EXAMPLE, "-o", str(tmp_path / "out"), "--placement", str(given))
    assert result.exit_code == 0, result.stderr
    assert f"placement of 2 discovered Apps: from {given}" in result.stderr
    tree = read_tree(tmp_path / "out")
    entry = tree["cluster1/foo/serviceentry.httpbin.bar.mesh.internal.yaml"][0]
    endpoints = entry["spec"]["endpoints"]
    assert [e["address"] for e in endpoints] == ["192.168.121.10"]  # cluster2's gateway


def test_the_same_placement_renders_the_same_bytes_from_file_or_store(cli, tmp_path: Path) -> None:
    given = placement_file(tmp_path, ["cluster1", "cluster2"], ["cluster1"])
    assert cli("render", "-f", EXAMPLE, "-o", str(tmp_path / "a"), "--placement",
               str(given)).exit_code == 0
    # the same placement, recorded in the store as apply records it
    intents = load([Source(p.name, p.read_text()) for p in sorted(Path(EXAMPLE).glob("*.yaml"))])
    snap = mbcompile.check(intents, before_apply=True)
    store = open_store(str(tmp_path / "state" / "state.db"))
    try:
        placement.record(store, snap, [Reading("cluster1", {HTTPBIN: 1, SLEEP: 1}),
                                       Reading("cluster2", {HTTPBIN: 2})], "test")
    finally:
        store.close()
    result = cli("render", "-f", EXAMPLE, "-o", str(tmp_path / "b"))
    assert result.exit_code == 0, result.stderr
    assert "placement of 2 discovered Apps: as last recorded in the state store" in result.stderr
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.yaml"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.yaml"))
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    status = cli("status")
    assert "discovered placements" in status.stdout and "httpbin.bar" in status.stdout


def test_without_a_recorded_placement_render_says_they_run_nowhere(cli, tmp_path: Path) -> None:
    result = cli("render", "-f", EXAMPLE, "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert "none recorded in the state store yet, so they run nowhere" in result.stderr


def test_a_placement_file_of_an_app_not_discovered_is_exit_2(cli, tmp_path: Path) -> None:
    bad = tmp_path / "placement.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "meshbridge.dev/v1alpha1", "kind": "App",
                                   "metadata": {"name": "nope", "namespace": "bar"},
                                   "spec": {"clusters": ["cluster1"]}}))
    result = cli("render", "-f", EXAMPLE, "-o", str(tmp_path / "out"), "--placement", str(bad))
    assert result.exit_code == 2
    assert f"{bad}#1 App/nope metadata.name: the intents have no App bar/nope" in result.stderr
    assert not (tmp_path / "out").exists()


def test_discover_on_clusters_it_cannot_read_keeps_what_was_recorded(cli, tmp_path: Path) -> None:
    intents = load([Source(p.name, p.read_text()) for p in sorted(Path(EXAMPLE).glob("*.yaml"))])
    store = open_store(str(tmp_path / "state" / "state.db"))
    try:
        placement.record(store, mbcompile.check(intents, before_apply=True),
                         [Reading("cluster2", {HTTPBIN: 3})], "test")
    finally:
        store.close()
    result = cli("discover", "-f", EXAMPLE, "-o", "json", "--retries", "1")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {"app": "httpbin", "namespace": "bar", "cluster": "cluster2", "ready": 3}]
    assert "cluster cluster2 could not be read (kubeconfig: kubeconfig" in result.stderr
    assert "its last known placements stand" in result.stderr
    again = cli("discover", "-f", EXAMPLE, "-o", "yaml", "--retries", "1")
    assert list(yaml.safe_load_all(again.stdout)) == [
        {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "App",
         "metadata": {"name": "httpbin", "namespace": "bar"}, "spec": {"clusters": ["cluster2"]}}]


def test_rbac_binds_the_roles_to_one_subject(cli) -> None:
    result = cli("rbac", "--service-account", "ops/meshbridge")
    assert result.exit_code == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs] == [
        ("ClusterRole", "meshbridge-apply", None),
        ("ClusterRoleBinding", "meshbridge-apply", None),
        ("Role", "meshbridge-apply", "istio-system"),
        ("RoleBinding", "meshbridge-apply", "istio-system"),
        ("ClusterRole", "meshbridge-discovery", None),
        ("ClusterRoleBinding", "meshbridge-discovery", None),
    ]
    assert docs[1]["subjects"] == [{"kind": "ServiceAccount", "name": "meshbridge",
                                    "namespace": "ops"}]
    discovery = docs[4]["rules"]
    assert all(set(r["verbs"]) == {"list", "watch"} for r in discovery)  # read-only
    without = cli("rbac", "--user", "ci", "--without-discovery")
    assert "meshbridge-discovery" not in without.stdout
    assert cli("rbac").exit_code == 2
    assert cli("rbac", "--user", "a", "--group", "b").exit_code == 2
