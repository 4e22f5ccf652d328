"""Discovered placement against real API servers (scripts/k8s-testenv), through the CLI: where
an App runs is read from Services with ready EndpointSlice endpoints (not-ready ones do not
count) and, for a client-only App, from labelled workloads; apply routes by it. Then the same
as a user bound to exactly what `meshbridge rbac` prints: no 403; and with one rule taken away,
the 403 named (verb, resource, namespace, cluster) while the other cluster carries on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import remove_mesh, write_docs
from lightkube import codecs
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)
from livemesh import API, next_mesh
from testenvrun import Cluster
from workloads import deploy, serve, unserve

pytestmark = pytest.mark.k8s

GATEWAYS = {"cluster1": "10.1.0.1", "cluster2": "10.1.0.2"}


def mesh_docs(mesh: str, ns: str, client_ns: str, kubeconfigs: dict[str, Path]) -> list[dict[str, Any]]:
    """sleep (client-only, in ``client_ns``) calls httpbin (in ``ns``), both discovered."""
    docs: list[dict[str, Any]] = [{"apiVersion": API, "kind": "Mesh", "metadata": {"name": mesh}}]
    for name, address in GATEWAYS.items():
        docs.append({"apiVersion": API, "kind": "Cluster", "metadata": {"name": name}, "spec": {
            "gateway": {"address": address}, "kubeconfig": {"path": str(kubeconfigs[name])}}})
    docs += [
        {"apiVersion": API, "kind": "App", "metadata": {"name": "httpbin", "namespace": ns},
         "spec": {"discover": {}}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "sleep", "namespace": client_ns},
         "spec": {"discover": {}}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": "httpbin", "namespace": ns},
         "spec": {"app": "httpbin", "port": 8000, "protocol": "HTTP", "failover": {},
                  "clients": [{"app": "sleep", "namespace": client_ns}]}},
    ]
    return docs


def entry(cluster: Cluster, client_ns: str, ns: str) -> list[str]:
    """The endpoints of the failover ServiceEntry sleep's namespace holds in ``cluster``."""
    path = (f"/apis/networking.istio.io/v1beta1/namespaces/{client_ns}/serviceentries/"
            f"httpbin.{ns}.mesh.internal")
    with cluster.client() as http:
        found = http.get(path)
    if found.status_code == 404:
        return []
    return [e["address"] for e in found.json()["spec"]["endpoints"]]


def test_placement_from_ready_endpoints_and_labelled_workloads(testenv, cli, tmp_path: Path) -> None:
    c1, c2 = testenv.clusters(2)
    mesh = next_mesh()
    ns, client_ns = f"{mesh}-bin", f"{mesh}-sleep"
    serve(c1, ns, "httpbin", True, False)  # one endpoint ready: placed
    serve(c2, ns, "httpbin", False)  # none ready: not placed
    deploy(c2, client_ns, "sleep")  # a labelled workload: the client runs in cluster2
    src = write_docs(tmp_path / "in" / "mesh.yaml", mesh_docs(
        mesh, ns, client_ns, {"cluster1": c1.kubeconfig, "cluster2": c2.kubeconfig}))
    try:
        found = cli("discover", "-f", str(src), "-o", "json")
        assert found.exit_code == 0, found.stderr
        assert json.loads(found.stdout) == [
            {"app": "httpbin", "namespace": ns, "cluster": "cluster1", "ready": 1},
            {"app": "sleep", "namespace": client_ns, "cluster": "cluster2", "ready": 0}]

        applied = cli("apply", "-f", str(src))
        assert applied.exit_code == 0, applied.stdout + applied.stderr
        assert f"placement: App {ns}/httpbin in cluster cluster1: found running (1 ready)" in \
            applied.stderr
        assert entry(c2, client_ns, ns) == ["10.1.0.1"]  # cluster1's gateway, from cluster2
        assert entry(c1, client_ns, ns) == []  # no client runs in cluster1

        serve(c2, ns, "httpbin", True)  # ready in cluster2 as well
        again = cli("apply", "-f", str(src))
        assert again.exit_code == 0, again.stderr
        assert sorted(entry(c2, client_ns, ns)) == sorted(
            ["10.1.0.1", f"httpbin.{ns}.svc.cluster.local"])
        status = cli("status")
        assert "discovered placements" in status.stdout
    finally:
        remove_mesh((c1, c2), mesh)
        for c in (c1, c2):
            unserve(c, ns, "httpbin")


RBAC_KINDS = {"ClusterRole": ClusterRole, "ClusterRoleBinding": ClusterRoleBinding,
              "Role": Role, "RoleBinding": RoleBinding}


def _bind(cluster: Cluster, rbac_yaml: str) -> list[Any]:
    objects = list(codecs.load_all_yaml(rbac_yaml))
    client = cluster.lightkube()
    for obj in objects:
        client.apply(obj, field_manager="test")
    return objects


def _without(cluster: Cluster, kind: str, name: str, resource: str, verb: str | None = None,
             namespace: str | None = None) -> None:
    """Take a rule out of a role: the one for ``resource``, or only its ``verb``."""
    client = cluster.lightkube()
    role = client.get(RBAC_KINDS[kind], name, namespace=namespace)
    kept = []
    for rule in role.rules:
        if resource in rule.resources:
            if verb is None:
                continue
            rule.verbs = [v for v in rule.verbs if v != verb]
        kept.append(rule)
    role.rules = kept
    client.replace(role)


def test_discovery_and_apply_as_the_documented_role(testenv, cli, tmp_path: Path) -> None:
    c1, c2 = testenv.clusters(2)
    mesh = next_mesh()
    user = f"meshbridge-{mesh}"
    ns, client_ns = f"{mesh}-bin", f"{mesh}-sleep"
    rbac = cli("rbac", "--user", user)
    assert rbac.exit_code == 0
    bound = {c.name: _bind(c, rbac.stdout) for c in (c1, c2)}
    kubeconfigs = {"cluster1": c1.user_kubeconfig(user, tmp_path / "c1.kubeconfig"),
                   "cluster2": c2.user_kubeconfig(user, tmp_path / "c2.kubeconfig")}
    serve(c1, ns, "httpbin", True)
    deploy(c2, client_ns, "sleep")
    src = write_docs(tmp_path / "in" / "mesh.yaml", mesh_docs(mesh, ns, client_ns, kubeconfigs))
    try:
        found = cli("discover", "-f", str(src), "-o", "json")
        assert found.exit_code == 0 and "forbidden" not in found.stderr, found.stderr
        assert len(json.loads(found.stdout)) == 2
        applied = cli("apply", "-f", str(src))
        assert applied.exit_code == 0 and "forbidden" not in applied.stdout + applied.stderr, \
            applied.stdout + applied.stderr
        # the role lets apply read what each istiod publishes (k8s-testenv's signs with a CA of
        # its own, so apply names it): with no right to, apply would stay silent about it
        for name in ("cluster1", "cluster2"):
            assert f"{name}: istiod signs with a root outside the mesh" in applied.stderr, \
                applied.stderr

        # discovery without its EndpointSlice rule in cluster1: named, and cluster2 carries on
        _without(c1, "ClusterRole", "meshbridge-discovery", "endpointslices")
        refused = cli("discover", "-f", str(src), "-o", "json")
        assert refused.exit_code == 1
        assert "forbidden: list endpointslices.discovery.k8s.io in every namespace (cluster " \
               "cluster1)" in refused.stderr, refused.stderr
        assert [(p["app"], p["cluster"]) for p in json.loads(refused.stdout)] == [
            ("httpbin", "cluster1"), ("sleep", "cluster2")]  # cluster1's last known stands

        # apply without patch on ServiceEntries in cluster2, where one must change
        _without(c2, "ClusterRole", "meshbridge-apply", "serviceentries", "patch")
        serve(c2, ns, "httpbin", True)
        failed = cli("apply", "-f", str(src))
        assert failed.exit_code == 1
        out = failed.stdout + failed.stderr
        assert f"cluster2: failed ServiceEntry/{client_ns}/httpbin.{ns}.mesh.internal" in out, out
        assert f'cannot patch resource "serviceentries" in API group "networking.istio.io" in ' \
               f'the namespace "{client_ns}"' in out, out
        cells = [[c.strip() for c in line.split("│")] for line in failed.stdout.splitlines()]
        rows = {c[0]: c[1] for c in cells if c[0] in ("cluster1", "cluster2")}
        assert rows == {"cluster1": "Applied", "cluster2": "Failed"}, failed.stdout
    finally:
        remove_mesh((c1, c2), mesh)
        for c in (c1, c2):
            unserve(c, ns, "httpbin")
            client = c.lightkube()
            for obj in reversed(bound[c.name]):
                client.delete(type(obj), obj.metadata.name, namespace=obj.metadata.namespace)
