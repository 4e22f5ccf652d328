"""apply, diff and status against real Kubernetes API servers (scripts/k8s-testenv).

The API servers are shared by the session, so each test works in a mesh of its own (the
``meshbridge.dev/mesh`` label) and in namespaces of its own, and removes what it applied.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from pathlib import Path

import pytest
import yaml
from helpers import store_from_before_identities, write_docs
from livemesh import API, apply_docs, example_for, mesh_docs, point_at

pytestmark = pytest.mark.k8s

def _rvs(cluster, namespaces: list[str], mesh: str) -> dict[str, str]:
    """resourceVersion of every object of ``mesh`` in the given namespaces (+ istio-system)."""
    out = {}
    with cluster.client() as http:
        for group, plural in (("networking.istio.io/v1beta1", "serviceentries"),
                              ("networking.istio.io/v1beta1", "destinationrules"),
                              ("networking.istio.io/v1beta1", "gateways"),
                              ("networking.istio.io/v1beta1", "virtualservices"),
                              ("security.istio.io/v1beta1", "authorizationpolicies")):
            for ns in [*namespaces, "istio-system"]:
                items = http.get(f"/apis/{group}/namespaces/{ns}/{plural}",
                                 params={"labelSelector": f"meshbridge.dev/mesh={mesh}"}).json()
                for it in items.get("items", []):
                    out[f"{plural}/{ns}/{it['metadata']['name']}"] = it["metadata"]["resourceVersion"]
    return out


def test_seed_examples_land_and_reapply_writes_nothing(cli, mesh) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    result = apply_docs(cli, mesh["tmp"], docs)
    assert result.exit_code == 0, result.stdout + result.stderr
    c1, c2 = mesh["clusters"][0], mesh["clusters"][1]
    with c1.client() as http:
        se = http.get("/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2").json()
    assert se["spec"]["endpoints"][0]["address"] == "192.168.121.10"
    assert se["metadata"]["labels"]["meshbridge.dev/mesh"] == mesh["name"]
    with c2.client() as http:
        gw = http.get("/apis/networking.istio.io/v1beta1/namespaces/istio-system/gateways/httpbin-bar-cluster2")
    assert gw.status_code == 200
    before = {**_rvs(c1, ["foo"], mesh["name"]), **{f"c2:{k}": v for k, v in _rvs(c2, ["bar"], mesh["name"]).items()}}
    again = apply_docs(cli, mesh["tmp"], docs)
    assert again.exit_code == 0
    after = {**_rvs(c1, ["foo"], mesh["name"]), **{f"c2:{k}": v for k, v in _rvs(c2, ["bar"], mesh["name"]).items()}}
    assert before == after, "re-applying unchanged intents wrote to the cluster"
    assert "Applied" in again.stdout


def test_change_one_intent_then_remove_it(cli, mesh) -> None:
    ns = f"t{mesh['name']}"
    docs = mesh_docs(mesh["name"]) + point_at([
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": f"cluster{i}"},
         "spec": {"gateway": {"address": f"10.9.0.{i}"}}} for i in (1, 2, 3)
    ], mesh["kubeconfigs"]) + [
        {"apiVersion": API, "kind": "App", "metadata": {"name": "client", "namespace": ns},
         "spec": {"clusters": ["cluster1"]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "a", "namespace": ns},
         "spec": {"clusters": ["cluster2"]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "b", "namespace": ns},
         "spec": {"clusters": ["cluster3"]}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": "a", "namespace": ns},
         "spec": {"app": "a", "port": 80, "protocol": "HTTP", "clients": [{"app": "client"}]}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": "b", "namespace": ns},
         "spec": {"app": "b", "port": 90, "clients": [{"app": "client"}]}},
    ]
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    c1, c2, c3 = mesh["clusters"]
    rv1, rv2, rv3 = _rvs(c1, [ns], mesh["name"]), _rvs(c2, [ns], mesh["name"]), _rvs(c3, [ns], mesh["name"])
    assert len(rv1) == 4 and len(rv2) == 3 and len(rv3) == 3
    # change intent a's port: only a's objects change
    docs[-2]["spec"]["port"] = 8080
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    now1, now2, now3 = _rvs(c1, [ns], mesh["name"]), _rvs(c2, [ns], mesh["name"]), _rvs(c3, [ns], mesh["name"])
    changed = {k for k in rv1 if now1.get(k) != rv1[k]}
    assert changed == {f"serviceentries/{ns}/a.{ns}.cluster2"}
    assert now3 == rv3, "cluster3 objects changed though its intent did not"
    # remove intent b: its objects are pruned, a's stay
    del docs[-1]
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    assert set(_rvs(c1, [ns], mesh["name"])) == {f"serviceentries/{ns}/a.{ns}.cluster2", f"destinationrules/{ns}/a.{ns}.cluster2"}
    assert _rvs(c3, [ns], mesh["name"]) == {}
    assert _rvs(c2, [ns], mesh["name"]) == now2, "a's server-side objects were touched by removing b"


def test_user_object_with_colliding_name_is_left_alone(cli, mesh) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    c1 = mesh["clusters"][0]
    theirs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
              "metadata": {"name": "httpbin.bar.cluster2", "namespace": "foo"},
              "spec": {"host": "httpbin.bar.cluster2"}}
    with c1.client() as http:
        http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})
        created = http.post("/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules", json=theirs)
        assert created.status_code == 201, created.text
    try:
        result = apply_docs(cli, mesh["tmp"], docs)
        assert result.exit_code == 1
        assert "conflict DestinationRule/foo/httpbin.bar.cluster2" in result.stderr
        with c1.client() as http:
            live = http.get("/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules/httpbin.bar.cluster2").json()
        assert live["spec"] == {"host": "httpbin.bar.cluster2"}, "meshbridge overwrote a user's object"
        assert "app.kubernetes.io/managed-by" not in (live["metadata"].get("labels") or {})
        status = cli("status", "--objects")
        assert "Failed" in status.stdout
    finally:
        with c1.client() as http:
            http.delete("/apis/networking.istio.io/v1beta1/namespaces/foo/destinationrules/httpbin.bar.cluster2")


def test_dead_cluster_is_reported_and_others_applied(cli, mesh, tmp_path: Path) -> None:
    dead = tmp_path / "dead.kubeconfig"
    config = yaml.safe_load(mesh["kubeconfigs"]["cluster1"].read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens there
    dead.write_text(yaml.safe_dump(config))
    docs = example_for("sleep-httpbin", mesh["name"], {**mesh["kubeconfigs"], "cluster1": dead})
    result = apply_docs(cli, mesh["tmp"], docs, "--retries", "2")
    assert result.exit_code == 1
    assert "Unreachable" in result.stdout
    with mesh["clusters"][1].client() as http:
        gw = http.get("/apis/networking.istio.io/v1beta1/namespaces/istio-system/gateways/httpbin-bar-cluster2")
    assert gw.status_code == 200, "the reachable cluster was not applied"
    status = cli("status")
    assert status.exit_code == 1
    assert "Unreachable" in status.stdout and "Applied" in status.stdout


def test_drift_is_detected_and_corrected(cli, mesh) -> None:
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    c1 = mesh["clusters"][0]
    path = "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2"
    with c1.client() as http:
        patch = {"spec": {"endpoints": [{"address": "6.6.6.6", "ports": {"tcp": 1}}]}}
        r = http.patch(path, content=json.dumps(patch),
                       headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
    src = write_docs(mesh["tmp"] / "intents" / "mesh.yaml", docs)
    diff = cli("diff", "-f", str(src))
    assert diff.exit_code == 1
    assert "update ServiceEntry/foo/httpbin.bar.cluster2" in diff.stdout
    assert "drift" in diff.stdout and "6.6.6.6" in diff.stdout
    assert apply_docs(cli, mesh["tmp"], docs).exit_code == 0
    with c1.client() as http:
        live = http.get(path).json()
    assert live["spec"]["endpoints"][0]["address"] == "192.168.121.10"
    assert cli("diff", "-f", str(src)).exit_code == 0


def test_apply_sends_the_private_keys_render_leaves_out_of_its_tree(cli, mesh) -> None:
    """render -o DIR writes no key; apply still sends cacerts and the ingress credential, the
    same Secrets --include-secrets writes, without reading anything render wrote."""
    docs = example_for("external-mtls", mesh["name"], mesh["kubeconfigs"])
    for d in docs:
        if d["kind"] == "Mesh":
            d["spec"]["rootCA"] = {"keyAlgorithm": "ECDSA-P256"}
    src = write_docs(mesh["tmp"] / "intents" / "mesh.yaml", docs)
    out, full = mesh["tmp"] / "out", mesh["tmp"] / "full"
    rendered = cli("render", "-f", str(src), "-o", str(out))
    assert rendered.exit_code == 0, rendered.stderr
    assert "left out 2 Secrets holding private keys" in rendered.stderr
    assert not [p for p in out.rglob("*.yaml") if "PRIVATE KEY" in p.read_text()]
    assert not list(out.rglob("secret.*"))
    assert cli("render", "-f", str(src), "-o", str(full), "--include-secrets").exit_code == 0
    result = cli("apply", "-f", str(src))
    assert result.exit_code == 0, result.stdout + result.stderr
    with mesh["clusters"][0].client() as http:
        for name, key in (("cacerts", "ca-key.pem"), ("httpbin.example.com-credential", "tls.key")):
            live = http.get(f"/api/v1/namespaces/istio-system/secrets/{name}").json()
            assert "PRIVATE KEY" in base64.b64decode(live["data"][key]).decode(), name
            wanted = yaml.safe_load((full / "cluster1" / "istio-system" / f"secret.{name}.yaml").read_text())
            assert live["data"] == wanted["data"], name
            assert live["metadata"]["labels"]["meshbridge.dev/mesh"] == mesh["name"]


def test_three_cluster_mesh_lands_and_is_valid(cli, mesh) -> None:
    docs = example_for("helloworld-lb", mesh["name"], mesh["kubeconfigs"])
    docs += point_at([{"apiVersion": API, "kind": "Cluster", "metadata": {"name": "cluster3"},
                        "spec": {"gateway": {"address": "10.0.0.3"}}}], mesh["kubeconfigs"])
    for d in docs:
        if d["kind"] == "App" and d["metadata"]["name"] == "helloworld":
            d["spec"]["clusters"] = ["cluster1", "cluster2", "cluster3"]
        if d["kind"] == "InboundIntent":
            d["spec"]["loadBalancing"]["weights"] = {"cluster1": 40, "cluster2": 30, "cluster3": 30}
    result = apply_docs(cli, mesh["tmp"], docs)
    assert result.exit_code == 0, result.stdout + result.stderr
    with mesh["clusters"][0].client() as http:
        vs = http.get("/apis/networking.istio.io/v1beta1/namespaces/sample/virtualservices/helloworld.sample").json()
    weights = sorted(r["weight"] for r in vs["spec"]["http"][0]["route"])
    assert weights == [30, 30, 40]


def test_gateway_is_discovered_from_the_ingress_service(cli, mesh) -> None:
    c2 = mesh["clusters"][1]
    with c2.client() as http:
        http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{mesh['name']}"},
                "status": {"addresses": [{"type": "InternalIP", "address": "172.30.0.7"}]}}
        r = http.post("/api/v1/nodes", json=node)
        assert r.status_code == 201, r.text
        http.patch(f"/api/v1/nodes/{node['metadata']['name']}/status", content=json.dumps({"status": node["status"]}),
                   headers={"Content-Type": "application/merge-patch+json"})
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
               "spec": {"type": "NodePort", "selector": {"istio": "ingressgateway"},
                        "ports": [{"name": "tls", "port": 15443, "targetPort": 15443}]}}
        r = http.post("/api/v1/namespaces/istio-system/services", json=svc)
        assert r.status_code == 201, r.text
        node_port = r.json()["spec"]["ports"][0]["nodePort"]
    try:
        docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
        for d in docs:
            if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster2":
                del d["spec"]["gateway"]
        result = apply_docs(cli, mesh["tmp"], docs)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert f"cluster2: gateway discovered at 172.30.0.7:{node_port}" in result.stderr
        with mesh["clusters"][0].client() as http:
            se = http.get("/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2").json()
        assert se["spec"]["endpoints"][0] == {"address": "172.30.0.7", "ports": {"tcp": node_port}}
    finally:
        with c2.client() as http:
            http.delete("/api/v1/namespaces/istio-system/services/istio-ingressgateway")
            http.delete(f"/api/v1/nodes/node-{mesh['name']}")


WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
GATEWAYS = "/apis/networking.istio.io/v1beta1/namespaces/istio-system/gateways"


@contextlib.contextmanager
def _istio_webhook_away(cluster):
    """Istio's validating webhook unregistered for a moment (as on a cluster where the objects
    were written before Istio's webhook was installed), and back, enforced, afterwards."""
    with cluster.client() as http:
        hooks = [h for h in http.get(WEBHOOKS).json()["items"]
                 if any(w["name"] == "validation.istio.io" for w in h["webhooks"])]
        assert hooks, "the test cluster runs no Istio webhook"
        for h in hooks:
            assert http.delete(f"{WEBHOOKS}/{h['metadata']['name']}").status_code == 200
        try:
            yield http
        finally:
            for h in hooks:
                meta = h["metadata"]
                h["metadata"] = {"name": meta["name"]}
                assert http.post(WEBHOOKS, json=h).status_code == 201
            probe = {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
                     "metadata": {"name": "webhook.probe", "namespace": "istio-system"},
                     "spec": {"servers": [{"port": {"number": 80, "name": "http",
                                                    "protocol": "HTTP"}, "hosts": ["*"]}]}}
            deadline = time.monotonic() + 30
            while http.post(GATEWAYS, params={"dryRun": "All"}, json=probe).status_code == 201:
                assert time.monotonic() < deadline, "Istio's webhook is not enforced again"
                time.sleep(0.2)


def test_upgrade_replaces_dotted_gateway_names_in_oneapply_docs(cli, mesh) -> None:
    """A cluster that got its cross-cluster Gateway from meshbridge before Gateway names became
    DNS labels (``httpbin.bar.cluster2``, which Istio rejects and never serves) gets the new
    ``httpbin-bar-cluster2`` and loses the old one in a single apply, through Istio's webhook."""
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    c2 = mesh["clusters"][1]
    legacy = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "httpbin.bar.cluster2", "namespace": "istio-system",
                     "labels": {"app.kubernetes.io/managed-by": "meshbridge",
                                "meshbridge.dev/mesh": mesh["name"]},
                     "annotations": {"meshbridge.dev/owners": "InboundIntent/bar/httpbin"}},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
             "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["httpbin.bar.cluster2"]}]},
    }
    with _istio_webhook_away(c2) as http:
        created = http.post(GATEWAYS, json=legacy)
        assert created.status_code == 201, created.text
    # the store that applied it then, as this meshbridge finds it
    store_from_before_identities(os.environ["MESHBRIDGE_STATE"], ["cluster2"])

    result = apply_docs(cli, mesh["tmp"], docs)
    assert result.exit_code == 0, result.stdout + result.stderr
    with c2.client() as http:
        found = http.get(GATEWAYS, params={"labelSelector": f"meshbridge.dev/mesh={mesh['name']}"})
        names = sorted(g["metadata"]["name"] for g in found.json()["items"])
    assert names == ["httpbin-bar-cluster2"]


def test_a_failed_gateway_discovery_says_why(cli, mesh, tmp_path: Path) -> None:
    """cluster2 serves cluster1 and leaves its gateway address out: when discovery fails, the
    user reads why (the API server's answer, or why it could not be reached), exit 2, nothing
    written."""
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    for d in docs:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster2":
            del d["spec"]["gateway"]  # and c2 has no istio-ingressgateway Service
    result = apply_docs(cli, mesh["tmp"], docs)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert ('Cluster/cluster2 spec.gateway: gateway discovery failed: service '
            'istio-system/istio-ingressgateway: services "istio-ingressgateway" not found') in result.stderr
    assert _rvs(mesh["clusters"][0], ["foo"], mesh["name"]) == {}

    dead = tmp_path / "dead.kubeconfig"
    config = yaml.safe_load(mesh["kubeconfigs"]["cluster2"].read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens there
    dead.write_text(yaml.safe_dump(config))
    for d in docs:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster2":
            d["spec"]["kubeconfig"] = {"path": str(dead)}
    result = apply_docs(cli, mesh["tmp"], docs, "--timeout", "2")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert ("Cluster/cluster2 spec.gateway: gateway discovery failed: cannot reach the "
            "cluster's API server: ") in result.stderr


def test_a_cluster_that_needs_no_gateway_reports_no_discovery(cli, mesh) -> None:
    """cluster1 only runs the client: without a gateway address it is not discovered, and no
    "discovery failed" warning is shown."""
    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    for d in docs:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster1":
            d["spec"].pop("gateway", None)
    result = apply_docs(cli, mesh["tmp"], docs)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "discovery" not in result.stderr


def test_apply_takes_the_cluster_leases_server_replicas_take(cli, mesh, tmp_path: Path) -> None:
    """A local apply on the store of `meshbridge serve` replicas: while a replica holds a
    cluster's lease it writes to no cluster and exits 1 naming the holder; once the lease is
    free it applies, holding the leases itself (a new term) and releasing them at the end."""
    from meshbridge.store import open_store

    docs = example_for("sleep-httpbin", mesh["name"], mesh["kubeconfigs"])
    store = open_store(str(tmp_path / "state" / "state.db"))  # the path the cli fixture uses
    try:
        assert store.acquire_lease("cluster:cluster2", "replica-x", 120) is not None
        held = apply_docs(cli, mesh["tmp"], docs, "--lease-wait", "2")
        assert held.exit_code == 1, held.stdout + held.stderr
        assert "waiting up to 2 s" in held.stderr and "cluster2 (replica-x)" in held.stderr
        assert "cluster2 (replica-x); waited 2 s" in held.stderr
        assert _rvs(mesh["clusters"][0], ["foo"], mesh["name"]) == {}, "cluster1 was written"
        store.release_leases("replica-x", ["cluster:cluster2"])
        free = apply_docs(cli, mesh["tmp"], docs, "--lease-wait", "2")
        assert free.exit_code == 0, free.stdout + free.stderr
        assert _rvs(mesh["clusters"][0], ["foo"], mesh["name"]) != {}
        now, leases = store.leases("cluster:")
        by_name = {lease.name: lease for lease in leases}
        assert by_name["cluster:cluster2"].holder.startswith("cli:")
        assert by_name["cluster:cluster2"].term == 2 and by_name["cluster:cluster2"].expires < now
        assert by_name["cluster:cluster1"].expires < now  # released
    finally:
        store.close()
