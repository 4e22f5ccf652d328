"""Cross-cluster calls in the lab as a real cluster makes them, none of it given by hand:
istiod signs with the ``cacerts`` Secret apply wrote (delivered to it as the kubelet delivers a
secret volume), a gateway address the intents leave out is discovered by apply from the
cluster's ingress gateway Service, and a caller with a route but no permission is refused by
the remote server's own sidecar.

The tests share one lab of ``meshes/discovered-closed.yaml`` and only read it: cluster2 has no
gateway address in the intents; httpbin in cluster2 is closed to all but sleep (foo, cluster1);
intruder runs beside sleep in foo (same namespace, so the same route) as another service
account.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from labrun import MESHES, LabRun, lab_in_a_new_folder

pytestmark = pytest.mark.lab

URL = "http://httpbin.bar.cluster2:8000/headers"
SLEEP = "spiffe://cluster.local/ns/foo/sa/sleep"


@pytest.fixture(scope="module")
def lab(lab_tools: None) -> Iterator[LabRun]:
    with lab_in_a_new_folder() as run:
        run.up(MESHES / "discovered-closed.yaml")
        yield run


def api(lab: LabRun, cluster: str, path: str) -> dict[str, Any]:
    proc = lab.mesh_lab("api", cluster, path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def denied(lab: LabRun, instance: str) -> int:
    """How many requests the instance's sidecar refused by an AuthorizationPolicy."""
    stats = lab.admin(instance, "/stats?filter=rbac.denied")
    found = re.search(r"^http\.inbound_[^;]*_8000;\.rbac\.denied: (\d+)$", stats, re.M)
    assert found, stats
    return int(found.group(1))


def test_the_gateway_address_left_out_is_discovered_and_carries_the_traffic(lab: LabRun) -> None:
    node = lab.state["clusters"]["cluster2"]["node"]
    node_port = lab.state["clusters"]["cluster2"]["node_ports"]["15443"]["node_port"]
    # The intents apply read say nothing of it ...
    intents = list(yaml.safe_load_all((lab.dir / "intents.yaml").read_text()))
    cluster2 = next(d for d in intents if d["kind"] == "Cluster"
                    and d["metadata"]["name"] == "cluster2")
    assert "gateway" not in cluster2["spec"], cluster2
    # ... apply found it in cluster2 (the gateway Service's NodePort on the lab's node) ...
    assert f"cluster2: gateway discovered at {node}:{node_port}" in (
        lab.dir / "apply.log").read_text()
    # ... wrote it into cluster1's route to httpbin ...
    entry = api(lab, "cluster1", "/apis/networking.istio.io/v1beta1/namespaces/foo/"
                                 "serviceentries/httpbin.bar.cluster2")
    assert [(e["address"], list(e["ports"].values())) for e in entry["spec"]["endpoints"]] == [
        (node, [node_port])]
    # ... and the request goes that way.
    (answer,) = lab.request("sleep.foo@cluster1", URL)
    assert (answer["status"], answer["cluster"], answer["app"]) == (200, "cluster2", "httpbin")
    assert answer["peer"] == SLEEP


def test_a_caller_with_a_route_but_no_permission_is_refused_by_the_remote_sidecar(
    lab: LabRun,
) -> None:
    before = denied(lab, "httpbin.bar@cluster2")
    (allowed,) = lab.request("sleep.foo@cluster1", URL)
    (refused,) = lab.request("intruder.foo@cluster1", URL)
    assert (allowed["status"], allowed["peer"]) == (200, SLEEP), allowed
    assert refused == {"status": 403}, refused
    # the 403 is httpbin's sidecar's, in cluster2: the request crossed and was refused there
    assert denied(lab, "httpbin.bar@cluster2") == before + 1
    # a path the access points leave out is refused to sleep too
    (path,) = lab.request("sleep.foo@cluster1", "http://httpbin.bar.cluster2:8000/ip")
    assert path == {"status": 403}, path


def serial_numbers(pem: str) -> list[int]:
    return [c.serial_number for c in x509.load_pem_x509_certificates(pem.encode())]


def test_istiod_signs_with_the_cacerts_secret_apply_wrote(lab: LabRun) -> None:
    secret = api(lab, "cluster2", "/api/v1/namespaces/istio-system/secrets/cacerts")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshbridge"
    (intermediate,) = serial_numbers(data["ca-cert.pem"])
    (root,) = serial_numbers(data["root-cert.pem"])
    # httpbin's workload certificate (what its sidecar got over SDS): issued by that
    # intermediate, and the root it trusts is that root
    secrets = {c["secret"]["name"]: c["secret"] for c in json.loads(lab.admin(
        "httpbin.bar@cluster2", "/config_dump?resource=dynamic_active_secrets"))["configs"]}
    chain = serial_numbers(base64.b64decode(secrets["default"]["tls_certificate"][
        "certificate_chain"]["inline_bytes"]).decode())
    assert chain[1] == intermediate, (chain, intermediate)
    trusted = serial_numbers(base64.b64decode(secrets["ROOTCA"]["validation_context"][
        "trusted_ca"]["inline_bytes"]).decode())
    assert trusted == [root], (trusted, root)
    # and the root istiod publishes to the cluster's namespaces is the Secret's
    published = api(lab, "cluster2", "/api/v1/namespaces/bar/configmaps/istio-ca-root-cert")
    assert serial_numbers(published["data"]["root-cert.pem"]) == [root]
