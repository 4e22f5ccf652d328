"""Every seed scenario, run for real in the mesh lab: real API servers with Istio's webhook, real
istiod per cluster, real Envoy sidecars and gateways, requests through them.

A scenario passes only when the traffic does what its intent says: the request crosses clusters
and arrives with the caller's identity, the split is the declared split, the ingress wants a
client certificate, undeclared callers and paths get 403, and REGISTRY_ONLY keeps undeclared
hosts out.

A split is checked on N = 400 requests: the count one side gets is Bin(N, p) for the declared
share p, and the test accepts the counts a correct split gives but with probability 1e-4 (exact
binomial tails, ``stats.acceptance``), so it fails by chance once in 10,000 runs at most. The
test also computes, and requires, its power: a 50/50 split passing a 30/70 check (or the
reverse) happens less than once in 10,000 runs, and a split that ignores the weights or a
cluster never passes.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml
from labrun import EXAMPLES, MESHES, LabRun, mesh_lab
from stats import split_check

pytestmark = pytest.mark.lab

SLEEP = "spiffe://cluster.local/ns/{ns}/sa/sleep"
N = 400


def clusters_of(answers: list[dict]) -> collections.Counter[str]:
    assert all(a.get("status") == 200 for a in answers), answers
    return collections.Counter(a["cluster"] for a in answers)


def test_sleep_calls_httpbin_in_the_other_cluster(mesh_lab_run: LabRun) -> None:
    # httpbin's own Service declares its port http, as the seed's sample manifest does.
    mesh_lab_run.up(EXAMPLES / "sleep-httpbin", service_protocols=("bar/httpbin:8000=HTTP",))
    (answer,) = mesh_lab_run.request("sleep.foo@cluster1", "http://httpbin.bar.cluster2:8000/headers")
    assert answer["status"] == 200
    assert (answer["cluster"], answer["namespace"], answer["app"]) == ("cluster2", "bar", "httpbin")
    assert answer["path"] == "/headers"
    # mTLS end to end through cluster2's gateway: httpbin's sidecar saw sleep's certificate.
    assert answer["peer"] == SLEEP.format(ns="foo")

    # `down` leaves nothing: no process of the lab (Envoys its agents started included), no
    # network namespace, hence no listening port.
    running = mesh_lab_run.processes()
    kinds = {"kube-apiserver", "etcd", "pilot-discovery", "pilot-agent", "envoy",
             "meshbridge_dev.lab.programs.stub", "meshbridge_dev.lab.programs.dns"}
    assert kinds <= {k for cmd in running.values() for k in kinds if k in cmd}, running
    mesh_lab_run.down()
    assert mesh_lab_run.still_running(running) == {}
    assert mesh_lab_run.leftovers() == []


def test_helloworld_is_split_between_clusters_and_follows_a_changed_intent(
    mesh_lab_run: LabRun, tmp_path: Path
) -> None:
    mesh_lab_run.up(EXAMPLES / "helloworld-lb")
    url = "http://helloworld.sample.svc.cluster.local:5000/hello"
    answers = mesh_lab_run.request("sleep.sample@cluster1", url, count=N)
    split = clusters_of(answers)
    lo, hi = split_check(N, 0.5, wrong=0.3)
    assert set(split) == {"cluster1", "cluster2"}, split
    assert lo <= split["cluster1"] <= hi, (split, (lo, hi))
    assert all(a["peer"] == SLEEP.format(ns="sample") for a in answers)

    # The same mesh with every request kept at home: `mesh-lab apply` waits for the ACKs.
    docs = list(yaml.safe_load_all((EXAMPLES / "helloworld-lb" / "mesh.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "InboundIntent":
            doc["spec"]["loadBalancing"]["weights"] = {"cluster1": 100, "cluster2": 0}
    changed = tmp_path / "helloworld-local.yaml"
    changed.write_text(yaml.safe_dump_all(docs))
    mesh_lab_run.apply(changed)
    assert clusters_of(mesh_lab_run.request("sleep.sample@cluster1", url, count=20)) == {
        "cluster1": 20
    }


def test_external_mtls_and_authorization(mesh_lab_run: LabRun, tmp_path: Path) -> None:
    mesh_lab_run.up(EXAMPLES / "external-mtls", MESHES / "intruder.yaml")
    client = tmp_path / "client"
    issued = mesh_lab_run.meshbridge(
        "pki", "issue-client", "--host", "httpbin.example.com", "--cn", "lab-caller",
        "--out", str(client),
    )
    assert issued.returncode == 0, issued.stderr
    url = "https://httpbin.example.com/status/418"

    with_cert = mesh_lab_run.external("cluster1", url, cert=client / "client.crt",
                                      key=client / "client.key")
    assert with_cert["status"] == 418
    assert (with_cert["cluster"], with_cert["app"], with_cert["host"]) == (
        "cluster1", "httpbin", "httpbin.example.com")
    without = mesh_lab_run.external("cluster1", url)
    assert "error" in without and "status" not in without, without

    svc = "http://httpbin.default.svc.cluster.local:8000"
    allowed = [("GET", "/headers"), ("GET", "/status/200")]
    for method, path in allowed:
        (answer,) = mesh_lab_run.request("sleep.default@cluster1", svc + path, method=method)
        assert answer["status"] == 200, (method, path, answer)
        assert answer["peer"] == SLEEP.format(ns="default")
    for method, path in [("GET", "/ip"), ("POST", "/headers")]:
        (answer,) = mesh_lab_run.request("sleep.default@cluster1", svc + path, method=method)
        assert answer == {"status": 403}, (method, path, answer)
    (intruder,) = mesh_lab_run.request("intruder.default@cluster1", svc + "/headers")
    assert intruder == {"status": 403}


def test_external_passthrough_answers_with_the_services_own_certificate(
    mesh_lab_run: LabRun, tmp_path: Path
) -> None:
    """ledger speaks HTTPS itself: its external access passes the caller's TLS through the
    gateway by SNI, and ledger's own certificate (the lab CA's, for ledger.example.com) answers.
    web beside it on the same gateway port is SIMPLE: the gateway ends TLS with the mesh's
    ingress certificate. SIMPLE for ledger is refused before anything reaches the lab."""
    mesh_lab_run.up(EXAMPLES / "external-passthrough")
    lab_ca = mesh_lab_run.dir / "lab-ca" / "ca.pem"
    ledger = "https://ledger.example.com/accounts"

    answer = mesh_lab_run.external("cluster1", ledger, cacert=lab_ca)
    assert answer.get("status") == 200, answer
    assert (answer["cluster"], answer["namespace"], answer["app"], answer["host"],
            answer["path"]) == ("cluster1", "shop", "ledger", "ledger.example.com", "/accounts")
    # The certificate is the service's, not the mesh's: the ingress CA does not verify it.
    mesh_ca = mesh_lab_run.external("cluster1", ledger)
    assert "certificate verification failed" in mesh_ca.get("error", ""), mesh_ca

    web = mesh_lab_run.external("cluster1", "https://web.example.com/status/200")
    assert (web.get("status"), web.get("app"), web.get("host")) == (
        200, "web", "web.example.com"), web
    web_lab_ca = mesh_lab_run.external("cluster1", "https://web.example.com/", cacert=lab_ca)
    assert "certificate verification failed" in web_lab_ca.get("error", ""), web_lab_ca

    # The same intent with SIMPLE: exit 2 at validation, nothing applied, ledger still answers.
    docs = list(yaml.safe_load_all((EXAMPLES / "external-passthrough" / "mesh.yaml").read_text()))
    (intent,) = [d for d in docs if d["kind"] == "InboundIntent"
                 and d["metadata"]["name"] == "ledger"]
    intent["spec"]["external"]["tlsMode"] = "SIMPLE"
    simple = tmp_path / "simple.yaml"
    simple.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    refused = mesh_lab("apply", "--dir", str(mesh_lab_run.dir), "-f", str(simple))
    assert refused.returncode == 2, refused.stderr
    assert (f"{simple}#5 InboundIntent/ledger spec.external.tlsMode: this service is "
            "HTTPS") in refused.stderr, refused.stderr
    assert "write tlsMode: PASSTHROUGH" in refused.stderr
    again = mesh_lab_run.external("cluster1", ledger, cacert=lab_ca)
    assert (again.get("status"), again.get("app")) == (200, "ledger"), again


def test_egress_under_registry_only(mesh_lab_run: LabRun) -> None:
    mesh_lab_run.up(EXAMPLES / "egress", MESHES / "egress-clients.yaml")
    c1, c2 = "sleep.default@cluster1", "sleep.default@cluster2"

    (mysql,) = mesh_lab_run.request(c1, "tcp://mysql.db.example:3306")
    assert (mysql["cluster"], mysql["app"]) == ("external", "mysql"), mysql
    # The MySQL ServiceEntry is for cluster1 only: cluster2's sidecar lets nothing through.
    (refused,) = mesh_lab_run.request(c2, "tcp://mysql.db.example:3306")
    assert "error" in refused, refused

    for client in (c1, c2):
        (nginx,) = mesh_lab_run.request(client, "http://nginx.example/")
        assert (nginx["status"], nginx["app"], nginx["host"]) == (200, "nginx-ext", "nginx.example")
        (https,) = mesh_lab_run.request(client, "https://www.google.com/")
        assert (https["status"], https["app"]) == (200, "google"), https

    # A host no ExternalService declares: reachable from outside the mesh, refused from inside.
    (outside,) = mesh_lab_run.request("outside", "http://outside.mesh-lab/")
    assert outside["status"] == 200
    (blocked,) = mesh_lab_run.request(c1, "http://outside.mesh-lab/")
    assert blocked == {"status": 502}, blocked  # Envoy's BlackHoleCluster
    (blocked_tls,) = mesh_lab_run.request(c1, "https://outside.mesh-lab/")
    assert "error" in blocked_tls, blocked_tls


def test_three_clusters_server_in_two_others(mesh_lab_run: LabRun, tmp_path: Path) -> None:
    mesh_lab_run.up(MESHES / "three-clusters.yaml")
    web = "web.shop@c1"
    for cluster in ("c2", "c3"):
        (answer,) = mesh_lab_run.request(web, f"http://api.shop.{cluster}:8080/orders")
        assert (answer["status"], answer["cluster"], answer["app"]) == (200, cluster, "api")
        assert answer["peer"] == "spiffe://cluster.local/ns/shop/sa/web"

    (db,) = mesh_lab_run.request(web, "tcp://db.data.c3:5432")
    assert (db["cluster"], db["namespace"], db["app"]) == ("c3", "data", "db"), db

    split = clusters_of(mesh_lab_run.request(web, "http://search.shop.svc.cluster.local:9000/",
                                             count=N))
    lo, hi = split_check(N, 0.3, wrong=0.5)
    assert set(split) == {"c2", "c3"}, split
    assert lo <= split["c2"] <= hi, (split, (lo, hi))

    # Undeclared: api is no client of db.
    (nothing,) = mesh_lab_run.request("api.shop@c2", "tcp://db.data.c3:5432")
    assert "error" in nothing, nothing

    # api leaves c3: its pod goes, and so does every route to it there; c2's stays.
    docs = list(yaml.safe_load_all((MESHES / "three-clusters.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "App" and doc["metadata"]["name"] == "api":
            doc["spec"]["clusters"] = ["c2"]
    moved = tmp_path / "three-clusters-api-in-c2.yaml"
    moved.write_text(yaml.safe_dump_all(docs))
    mesh_lab_run.apply(moved)
    assert "api.shop@c3" not in mesh_lab_run.state["pods"]
    (gone,) = mesh_lab_run.request(web, "http://api.shop.c3:8080/orders")
    assert "error" in gone, gone
    (still,) = mesh_lab_run.request(web, "http://api.shop.c2:8080/orders")
    assert (still["status"], still["cluster"]) == (200, "c2")
