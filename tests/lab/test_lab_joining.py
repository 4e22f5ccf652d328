"""A cluster that ran Istio before meshbridge joins the mesh, as docs/pki.md tells a user to do it.

``mesh-lab up --existing-istio cluster2`` starts cluster2 as such a cluster: istiod made a CA of
its own (no ``cacerts`` then), its workloads hold certificates from it, its install has none of
meshbridge's settings. meshbridge's apply writes cluster2's ``cacerts`` and objects, which alone
changes nothing istiod signs with; apply says so, naming both roots and the restarts, in order.
The test carries out exactly the restarts apply printed (the lab's stand-ins for ``kubectl
rollout restart``), checking after each what it was for, and ends with calls crossing both ways.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from helpers import wait_for
from labrun import MESHES, LabRun, lab_in_a_new_folder

pytestmark = pytest.mark.lab

MESH = MESHES / "joining.yaml"
SLEEP_TO_HTTPBIN = ("sleep.foo@cluster1", "http://httpbin.bar.cluster2:8000/headers")
PROBE_TO_WEB = ("probe.baz@cluster2", "http://web.shop.cluster1:8080/")
RESTART = re.compile(r"^\s*\d+\. kubectl .*-n (\S+) rollout restart (\S+)")


@pytest.fixture(scope="module")
def lab(lab_tools: None) -> Iterator[LabRun]:
    with lab_in_a_new_folder() as run:
        run.up(MESH, existing_istio=("cluster2",))
        yield run


def certs(lab: LabRun, instance: str) -> dict[str, object]:
    proc = lab.mesh_lab("certs", instance)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, object] = json.loads(proc.stdout)
    return answer


def cluster2_workloads(lab: LabRun) -> list[str]:
    return sorted(k for k, r in lab.state["pods"].items()
                  if r["cluster"] == "cluster2" and "proxy" in r["procs"])


def roots(lab: LabRun) -> dict[str, object]:
    """The root each cluster2 workload's certificate chains to, as its sidecar presents it."""
    return {w: certs(lab, w)["root"] for w in cluster2_workloads(lab)}


def mesh_root(lab: LabRun) -> str:
    proc = lab.meshbridge("pki", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    (root,) = [c["sha256"] for c in json.loads(proc.stdout)["certificates"]
               if c["role"] == "root"]
    return str(root)


def published(lab: LabRun) -> str:
    """The fingerprint of the root istiod publishes in cluster2's istio-system."""
    proc = lab.mesh_lab("api", "cluster2",
                        "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert")
    assert proc.returncode == 0, proc.stderr
    pem = json.loads(proc.stdout)["data"]["root-cert.pem"]
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return out.strip().partition("=")[2].replace(":", "").lower()


def call(lab: LabRun, source: str, url: str) -> dict[str, object]:
    (answer,) = lab.request(source, url)
    return answer


def test_a_cluster_on_its_own_ca_joins_after_the_restarts_apply_names(lab: LabRun) -> None:
    root = mesh_root(lab)
    # cluster2 runs as it did before meshbridge: istiod on a CA of its own, its workloads
    # certified by it, and calls between the clusters refused
    own = published(lab)
    assert own != root
    assert roots(lab) == dict.fromkeys(cluster2_workloads(lab), own)

    # apply writes cluster2's cacerts and objects: that alone changes nothing istiod signs with,
    # and apply says so, with both roots and the restarts in order
    proc = lab.mesh_lab("meshbridge", "--", "apply", "-f", str(lab.dir / "intents.yaml"))
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr
    assert (f"cluster2: istiod signs with a root outside the mesh: it publishes sha256:{own} "
            f"(istio-ca-root-cert), the mesh's is sha256:{root}") in said, said
    assert "cluster1: istiod" not in said, said
    plan = [m.groups() for m in map(RESTART.match, said.splitlines()) if m]
    assert plan == [("istio-system", "deployment/istiod"),
                    ("istio-system", "deployment/istio-ingressgateway"),
                    ("bar", "deployment,statefulset,daemonset"),
                    ("baz", "deployment,statefulset,daemonset")], said
    # status says the same, from what apply recorded
    status = lab.meshbridge("status")
    assert f"the mesh's is sha256:{root}" in status.stderr, status.stderr
    assert call(lab, *SLEEP_TO_HTTPBIN)["status"] == 503  # sleep's sidecar refuses httpbin's

    # 1. istiod restarts onto the cacerts and publishes the mesh's root; workloads keep theirs
    assert lab.mesh_lab("restart-istiod", "cluster2").returncode == 0
    wait_for(lambda: published(lab) == root, "istiod to publish the mesh's root", 120)
    assert certs(lab, "httpbin.bar@cluster2")["root"] == own
    assert call(lab, *SLEEP_TO_HTTPBIN)["status"] == 503
    # 2.-4. then the gateway and the workloads, namespace by namespace
    for namespace, _ in plan[1:]:
        proc = lab.mesh_lab("restart", "cluster2", namespace)
        assert proc.returncode == 0, proc.stderr
        if namespace == "bar":  # httpbin moved, probe (baz) not yet
            answer = call(lab, *SLEEP_TO_HTTPBIN)
            assert (answer["status"], answer["peer"]) == (
                200, "spiffe://cluster.local/ns/foo/sa/sleep"), answer
            assert call(lab, *PROBE_TO_WEB)["status"] == 503

    # every workload of cluster2 now chains to the mesh's root, calls cross both ways, and
    # apply and status have nothing more to say about cluster2's istiod
    assert roots(lab) == dict.fromkeys(cluster2_workloads(lab), root)
    answer = call(lab, *PROBE_TO_WEB)
    assert (answer["status"], answer["peer"]) == (200, "spiffe://cluster.local/ns/baz/sa/probe")
    proc = lab.mesh_lab("meshbridge", "--", "apply", "-f", str(lab.dir / "intents.yaml"))
    assert proc.returncode == 0 and "istiod signs" not in proc.stderr, proc.stderr
    assert "istiod signs" not in lab.meshbridge("status").stderr
