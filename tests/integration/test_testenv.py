"""scripts/k8s-testenv gives real, independent Kubernetes API servers with Istio's CRDs.

These tests pin down what the rest of the integration suite relies on: several
clusters at once, each a real kube-apiserver at the pinned release that serves
Istio's API groups, enforces Istio's CRD schemas and does server-side apply;
clusters do not share credentials or data; and ``down`` leaves no process or
listening port behind.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from testenvrun import REPO, Cluster, TestEnv, run_testenv

pytestmark = pytest.mark.k8s

APPLY = "application/apply-patch+yaml"
MANAGER = "meshbridge-test"
NS = "mb-testenv"
DR_PATH = f"/apis/networking.istio.io/v1/namespaces/{NS}/destinationrules"


def pinned_kubernetes() -> str:
    gomod = (REPO / "devtools" / "pins" / "kubernetes" / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", gomod, re.M)
    assert m, "k8s.io/kubernetes pin not found in devtools/pins/kubernetes/go.mod"
    return m.group(1)


def destination_rule(name: str, tls_mode: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {NS}
spec:
  host: reviews.{NS}.svc.cluster.local
  trafficPolicy:
    tls:
      mode: {tls_mode}
"""


def apply(http: httpx.Client, path: str, body: str) -> httpx.Response:
    """Server-side apply (PATCH application/apply-patch+yaml) as MANAGER."""
    return http.patch(
        path,
        params={"fieldManager": MANAGER, "force": "true"},
        content=body.encode(),
        headers={"Content-Type": APPLY},
    )


def ensure_namespace(http: httpx.Client) -> None:
    r = apply(http, f"/api/v1/namespaces/{NS}", f"apiVersion: v1\nkind: Namespace\n"
              f"metadata:\n  name: {NS}\n")
    assert r.status_code in (200, 201), r.text


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state, from the kernel's tables (and `ss` when installed)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    if shutil.which("ss"):
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def connectable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_three_clusters_serve_version_and_istio_groups(k8s_clusters: list[Cluster]) -> None:
    assert len(k8s_clusters) == 3
    servers = {c.server for c in k8s_clusters}
    assert len(servers) == 3, servers
    for server in servers:
        assert server.startswith("https://127.0.0.1:"), server
    pin = pinned_kubernetes()
    for cluster in k8s_clusters:
        with cluster.client() as http:
            version = http.get("/version")
            assert version.status_code == 200, version.text
            assert version.json()["gitVersion"] == pin
            assert http.get("/readyz").text == "ok"

            groups = {g["name"] for g in http.get("/apis").json()["groups"]}
            assert {
                "networking.istio.io",
                "security.istio.io",
                "telemetry.istio.io",
                "extensions.istio.io",
            } <= groups, groups
            resources = {r["name"] for r in http.get("/apis/networking.istio.io/v1").json()[
                "resources"]}
            assert {"destinationrules", "virtualservices", "gateways", "serviceentries",
                    "sidecars"} <= resources
            security = {r["name"] for r in http.get("/apis/security.istio.io/v1").json()[
                "resources"]}
            assert {"authorizationpolicies", "peerauthentications"} <= security


def test_istio_schema_enforced_and_server_side_apply(k8s_clusters: list[Cluster]) -> None:
    for cluster in k8s_clusters:
        with cluster.client() as http:
            ensure_namespace(http)

            bad = apply(http, f"{DR_PATH}/bogus-tls", destination_rule("bogus-tls", "BOGUS"))
            assert bad.status_code == 422, (bad.status_code, bad.text)
            status = bad.json()
            assert status["reason"] == "Invalid"
            assert "spec.trafficPolicy.tls.mode" in status["message"]
            assert "BOGUS" in status["message"]
            assert http.get(f"{DR_PATH}/bogus-tls").status_code == 404

            good = destination_rule("reviews", "ISTIO_MUTUAL")
            created = apply(http, f"{DR_PATH}/reviews", good)
            assert created.status_code == 201, created.text
            again = apply(http, f"{DR_PATH}/reviews", good)
            assert again.status_code == 200, again.text
            assert again.json()["metadata"]["resourceVersion"] == \
                created.json()["metadata"]["resourceVersion"], "no-op apply must not write"

            stored = http.get(f"{DR_PATH}/reviews").json()
            assert stored["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
            managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
            assert (MANAGER, "Apply") in managers


def test_clusters_are_independent(k8s_clusters: list[Cluster]) -> None:
    c1, c2, c3 = k8s_clusters
    with c1.client() as http:
        ensure_namespace(http)
        r = apply(http, f"{DR_PATH}/only-in-c1", destination_rule("only-in-c1", "DISABLE"))
        assert r.status_code in (200, 201), r.text
    for other in (c2, c3):
        with other.client() as http:
            assert http.get(f"{DR_PATH}/only-in-c1").status_code == 404

    # Each cluster has its own CA: c1's CA does not vouch for c2's serving certificate ...
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), \
            httpx.Client(base_url=c2.server, verify=c1.ssl_context()) as http:
        http.get("/version")
    # ... and c2 does not accept c1's client certificate.
    ctx = ssl.create_default_context(cadata=c2.ca_pem())
    cert, key = c1.client_cert_files()
    ctx.load_cert_chain(str(cert), str(key))
    with httpx.Client(base_url=c2.server, verify=ctx) as http:
        assert http.get("/api/v1/namespaces").status_code == 401


def test_kubeconfig_works_with_lightkube(k8s_clusters: list[Cluster]) -> None:
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.core_v1 import Namespace

    destination_rule_kind = create_namespaced_resource(
        "networking.istio.io", "v1", "DestinationRule", "destinationrules"
    )
    for cluster in k8s_clusters:
        client = cluster.lightkube()
        assert client.get(Namespace, "default").metadata.name == "default"
        client.apply(Namespace.from_dict({"metadata": {"name": NS}}), field_manager=MANAGER)
        obj = destination_rule_kind.from_dict({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "via-lightkube", "namespace": NS},
            "spec": {"host": "ratings", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}},
        })
        applied = client.apply(obj, field_manager=MANAGER)
        assert applied["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"


def test_down_leaves_no_process_or_listening_port(
    testenv_binaries: None, tmp_path: Path
) -> None:
    d = tmp_path / "env"
    up = run_testenv("up", "--istiod", "--dir", str(d), "solo", timeout=900)
    assert up.returncode == 0, up.stderr
    assert (d / "solo.kubeconfig").is_file()
    record = TestEnv(d).state()["clusters"]["solo"]
    pids = [record["apiserver"]["pid"], record["etcd"]["pid"], record["istiod"]["pid"]]
    istiod_ports = [p for k, p in record["istiod_ports"].items() if k != "address"]
    ports = [record["api_port"], record["etcd_port"], record["peer_port"], *istiod_ports]
    assert all(process_exists(p) for p in pids)
    assert set(ports) <= listening_ports()
    assert all(connectable(p) for p in ports)

    again = run_testenv("up", "--dir", str(d), "solo", timeout=120)
    assert again.returncode == 1
    assert "already recorded" in again.stderr

    down = run_testenv("down", "--dir", str(d), timeout=300)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if process_exists(p)] == []
    assert set(ports).isdisjoint(listening_ports())
    assert not any(connectable(p) for p in ports)
    assert not (d / "solo.kubeconfig").exists()
    assert json.loads((d / "k8s-testenv.json").read_text())["clusters"] == {}
    assert (d / "solo" / "kube-apiserver.log").is_file(), "logs are kept unless --purge"

    # A second down is a harmless no-op.
    assert run_testenv("down", "--purge", "--dir", str(d), timeout=60).returncode == 0


def test_istio_webhook_admits_like_a_real_cluster(k8s_clusters: list[Cluster]) -> None:
    """The CRD schema accepts a Gateway named with dots; Istio's webhook, as on a real cluster,
    does not. A valid Gateway still goes through."""
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "", "namespace": "default"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
             "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["httpbin.bar.cluster2"]}]},
    }
    url = "/apis/networking.istio.io/v1/namespaces/default/gateways"
    for cluster in k8s_clusters:
        with cluster.client() as http:
            gateway["metadata"]["name"] = "httpbin.bar.cluster2"
            denied = http.post(url, params={"dryRun": "All"}, json=gateway)
            assert denied.status_code in (400, 403), denied.text
            assert 'admission webhook "validation.istio.io" denied' in denied.json()["message"]
            assert "invalid gateway name" in denied.json()["message"]
            gateway["metadata"]["name"] = "httpbin-bar-cluster2"
            admitted = http.post(url, params={"dryRun": "All"}, json=gateway)
            assert admitted.status_code == 201, admitted.text


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    helped = run_testenv("--help", timeout=60)
    assert helped.returncode == 0
    for word in ("build", "up", "down"):
        assert word in helped.stdout

    bad = run_testenv("up", "--dir", str(tmp_path), "Not_A_Name", timeout=60)
    assert bad.returncode == 1
    assert "invalid cluster name 'Not_A_Name'" in bad.stderr

    missing = run_testenv("down", "--dir", str(tmp_path / "nope"), timeout=60)
    assert missing.returncode == 1
    assert "no such directory" in missing.stderr

    no_args = run_testenv("up", timeout=60)
    assert no_args.returncode == 2
