"""Each generator of ``compile/`` called on its own, on small meshes written here: the objects it
gives each cluster, checked for what a user would notice in a live mesh if it were wrong (a
remote name that resolves nowhere, traffic reset at a gateway, the wrong share of requests, a
caller let in or kept out, a host not declared). ``tests/golden`` compares whole renders of the
examples; these say which generator is at fault, and why the field matters.

Each generator is ``build(snapshot, Context)`` -> (cluster, object) pairs; the blueprint (a
validated snapshot and its VIPs) is made as ``render`` makes it, from an empty VIP table.
"""

from __future__ import annotations

import base64
import ipaddress
from collections import defaultdict
from types import ModuleType
from typing import Any

import pytest
import yaml
from intents import assert_rejected, base, doc, intent

from meshbridge import compile as mbcompile
from meshbridge.compile.envelope import Obj, ordered
from meshbridge.compile.inputs import ClusterCA, Context, IngressCredential, Material
from meshbridge.compile.pipeline import GENERATORS
from meshbridge.loading import Source, load

# in the pipeline's order
MODULES = [mbcompile.istio_operator, mbcompile.pki_secrets, mbcompile.crosscluster,
           mbcompile.loadbalancing, mbcompile.failover, mbcompile.authz, mbcompile.ingress,
           mbcompile.egress]
POOL = "10.77.0.0/24"
LOCAL = "httpbin.bar.svc.cluster.local"
MUTUAL = {"tls": {"mode": "ISTIO_MUTUAL"}}
TLS_MODE_KEY = "security.istio.io/tlsMode"
TLS_MODE = {TLS_MODE_KEY: "istio"}
REGION = "topology.kubernetes.io/region"


def mesh(**spec: Any) -> dict[str, Any]:
    return doc("Mesh", "default", {"vipPool": POOL, **spec})


def blueprint(docs: list[dict[str, Any]]) -> mbcompile.Blueprint:
    text = yaml.safe_dump_all(docs, sort_keys=False)
    return mbcompile.blueprint(load([Source("mesh.yaml", text)]), [])


def generated(
    module: ModuleType,
    docs: list[dict[str, Any]],
    material: Material | None = None,
    only: frozenset[str] | None = None,
) -> tuple[dict[str, list[Obj]], dict[tuple[str, str], str]]:
    """What ``module`` gives each cluster (in the order it gives them), and the VIP table."""
    bp = blueprint(docs)
    table = dict(mbcompile.vips.lookup(bp.vips))
    ctx = Context(vips=table, material=material or Material(), only=only)
    out: dict[str, list[Obj]] = defaultdict(list)
    for cluster, obj in module.build(bp.snapshot, ctx):
        out[cluster].append(obj)
    return dict(out), table


def one(objs: list[Obj], kind: str, namespace: str, name: str) -> Obj:
    found = [o for o in objs if (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
             == (kind, namespace, name)]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} in {listed(objs)}"
    return found[0]


def listed(objs: list[Obj]) -> list[tuple[str, str, str]]:
    return sorted((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs)


def in_pool(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(POOL)


def decoded(secret: Obj) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def placed(docs: list[dict[str, Any]], app: str, clusters: list[str]) -> list[dict[str, Any]]:
    """``docs`` with the App ``app`` placed in ``clusters``."""
    for d in docs:
        if d["kind"] == "App" and d["metadata"]["name"] == app:
            d["spec"] = {"clusters": clusters}
    return docs


# ------------------------------------------------------------------------------- crosscluster


def test_the_client_cluster_reaches_the_remote_name_at_a_vip_through_the_servers_gateway() -> None:
    docs = [mesh(), *base(), intent()]
    docs[2]["spec"]["gateway"]["port"] = 31002  # c2: its own port, not the mesh's default
    out, table = generated(mbcompile.crosscluster, docs)
    host = "httpbin.bar.c2"
    assert listed(out["c1"]) == [("DestinationRule", "foo", host), ("ServiceEntry", "foo", host)]
    entry = one(out["c1"], "ServiceEntry", "foo", host)["spec"]
    assert entry["hosts"] == [host]
    assert entry["location"] == "MESH_INTERNAL" and entry["resolution"] == "DNS"
    (vip,) = entry["addresses"]
    assert vip == table[("c1", host)] and in_pool(vip)
    assert entry["ports"] == [{"number": 8000, "protocol": "TCP", "name": "tcp"}]
    assert entry["endpoints"] == [{"address": "10.0.0.2", "ports": {"tcp": 31002}}]
    assert entry["exportTo"] == ["."]  # the client's namespace only
    rule = one(out["c1"], "DestinationRule", "foo", host)["spec"]
    assert rule["host"] == host and rule["trafficPolicy"] == MUTUAL


def test_the_server_cluster_exports_exactly_the_services_called_from_elsewhere() -> None:
    docs = [mesh(), *base(), intent(),
            doc("App", "local", {"clusters": ["c2"]}, "bar"),  # called only from its own cluster
            doc("App", "peer", {"clusters": ["c2"]}, "bar"),
            intent("local", app="local", port=80, clients=[{"app": "peer"}])]
    out, table = generated(mbcompile.crosscluster, docs)
    host = "httpbin.bar.c2"
    gateways = [o for o in out["c2"] if o["kind"] == "Gateway"]
    assert [g["metadata"]["name"] for g in gateways] == ["httpbin-bar-c2"]
    (gateway,) = gateways
    assert gateway["metadata"]["namespace"] == "istio-system"
    assert gateway["spec"] == {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                     "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": [host]}],
    }
    entry = one(out["c2"], "ServiceEntry", "istio-system", host)["spec"]
    # Without the tlsMode label istiod drops the endpoint from the gateway's SNI-DNAT cluster
    # and every request through the gateway is reset (access log UH).
    assert entry["endpoints"] == [{"address": LOCAL, "labels": TLS_MODE}]
    assert entry["hosts"] == [host] and entry["addresses"] == [table[("c2", host)]]
    rule = one(out["c2"], "DestinationRule", "istio-system", host)["spec"]
    assert rule["host"] == host and rule["trafficPolicy"] == MUTUAL
    assert not [o for o in out["c1"] if o["kind"] == "Gateway"]
    assert not [o for objs in out.values() for o in objs if "local" in o["metadata"]["name"]]


def test_a_client_where_the_server_runs_too_calls_it_locally_and_gets_nothing() -> None:
    docs = placed([mesh(), *base(), intent()], "httpbin", ["c1", "c2"])
    out, _ = generated(mbcompile.crosscluster, docs)
    assert out == {}


def test_two_ports_of_one_service_get_a_name_each_both_sent_to_the_gateway_port() -> None:
    docs = [mesh(), *base(), intent(protocol="HTTP"),
            intent("httpbin-admin", serviceName="httpbin", port=9000, protocol="HTTP")]
    out, _ = generated(mbcompile.crosscluster, docs)
    entry = one(out["c1"], "ServiceEntry", "foo", "httpbin.bar.c2")["spec"]
    assert entry["ports"] == [{"number": 8000, "protocol": "HTTP", "name": "http-8000"},
                              {"number": 9000, "protocol": "HTTP", "name": "http-9000"}]
    assert entry["endpoints"] == [
        {"address": "10.0.0.2", "ports": {"http-8000": 32001, "http-9000": 32001}}]


# ------------------------------------------------------------------------------ loadbalancing


def lb_mesh(protocol: str, weights: dict[str, int]) -> list[dict[str, Any]]:
    """httpbin in c1 and c2, split by ``weights``, called from c1 (which runs it) and from c3
    (which does not)."""
    docs = placed([mesh(), *base()], "httpbin", ["c1", "c2"])
    docs += [doc("Cluster", "c3", {"gateway": {"address": "10.0.0.3"}}),
             doc("App", "sleep3", {"clusters": ["c3"]}, "foo"),
             intent(protocol=protocol, loadBalancing={"weights": weights},
                    clients=[{"app": "sleep", "namespace": "foo"},
                             {"app": "sleep3", "namespace": "foo"}])]
    return docs


def shares(service: Obj, key: str = "http") -> dict[str, int]:
    (route,) = service["spec"][key]
    return {r["destination"]["host"]: r["weight"] for r in route["route"]}


def test_a_weighted_split_sends_each_clusters_share_to_that_cluster() -> None:
    out, table = generated(mbcompile.loadbalancing, lb_mesh("HTTP", {"c1": 30, "c2": 70}))
    here = one(out["c1"], "VirtualService", "foo", "httpbin.bar")
    assert here["spec"]["hosts"] == [LOCAL]  # clients keep calling the ordinary name
    assert shares(here) == {LOCAL: 30, "httpbin.bar.c2": 70}
    there = one(out["c3"], "VirtualService", "foo", "httpbin.bar")
    assert shares(there) == {"httpbin.bar.c1": 30, "httpbin.bar.c2": 70}
    for objs in out["c1"], out["c3"]:
        rule = one(objs, "DestinationRule", "foo", "httpbin.bar")["spec"]
        assert rule["host"] == LOCAL and rule["trafficPolicy"] == MUTUAL
    # c3 runs no instance: the ordinary name resolves there only through a VIP of its own
    entry = one(out["c3"], "ServiceEntry", "foo", "httpbin.bar")["spec"]
    assert entry["hosts"] == [LOCAL] and entry["resolution"] == "NONE"
    assert entry["addresses"] == [table[("c3", LOCAL)]] and in_pool(entry["addresses"][0])
    assert not [o for o in out["c1"] if o["kind"] == "ServiceEntry"]


def test_a_cluster_weighted_zero_gets_no_traffic() -> None:
    out, _ = generated(mbcompile.loadbalancing, lb_mesh("HTTP", {"c1": 0, "c2": 100}))
    assert shares(one(out["c1"], "VirtualService", "foo", "httpbin.bar")) == {"httpbin.bar.c2": 100}
    assert shares(one(out["c3"], "VirtualService", "foo", "httpbin.bar")) == {"httpbin.bar.c2": 100}


@pytest.mark.parametrize(("protocol", "key", "match"), [
    ("HTTP", "http", {"port": 8000}),
    ("GRPC", "http", {"port": 8000}),
    ("TCP", "tcp", {"port": 8000}),
    ("TLS", "tls", {"port": 8000, "sniHosts": [LOCAL]}),
])
def test_the_split_is_routed_the_way_the_protocol_can_be(protocol: str, key: str,
                                                         match: dict[str, Any]) -> None:
    out, _ = generated(mbcompile.loadbalancing, lb_mesh(protocol, {"c1": 40, "c2": 60}))
    spec = one(out["c1"], "VirtualService", "foo", "httpbin.bar")["spec"]
    assert set(spec) - {"hosts", "exportTo"} == {key}
    assert spec[key][0]["match"] == [match]
    assert shares({"spec": spec}, key) == {LOCAL: 40, "httpbin.bar.c2": 60}


# ----------------------------------------------------------------------------------- failover


def istio_priority(labels: dict[str, str], entries: list[str]) -> int:
    """An endpoint's priority as Istio gives it from ``failoverPriority``: the number of entries
    from the first one the endpoint's labels do not match to the end (0: it matches all)."""
    for j, entry in enumerate(entries):
        key, value = entry.split("=", 1)
        if labels.get(key) != value:
            return len(entries) - j
    return 0


def by_priority(entry: Obj, rule: Obj) -> list[list[str]]:
    """The endpoints' addresses, best priority first (one list per priority)."""
    entries = rule["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]["failoverPriority"]
    ranked: dict[int, list[str]] = defaultdict(list)
    for ep in entry["spec"]["endpoints"]:
        ranked[istio_priority(ep.get("labels", {}), entries)].append(ep["address"])
    return [sorted(ranked[p]) for p in sorted(ranked)]


def failover_mesh(**spec: Any) -> list[dict[str, Any]]:
    """httpbin (HTTP) in c1, c2 and c3 (c1 and c3 in region east, c2 in west), failover as
    ``spec`` says, called from c1."""
    docs = [mesh(),
            doc("Cluster", "c1", {"gateway": {"address": "10.0.0.1"}}, labels={REGION: "east"}),
            doc("Cluster", "c2", {"gateway": {"address": "10.0.0.2", "port": 31002}},
                labels={REGION: "west"}),
            doc("Cluster", "c3", {"gateway": {"address": "10.0.0.3"}}, labels={REGION: "east"}),
            doc("App", "sleep", {"clusters": ["c1"]}, "foo"),
            doc("App", "httpbin", {"clusters": ["c1", "c2", "c3"]}, "bar")]
    return [*docs, intent(protocol="HTTP", **spec)]


MESH_HOST = "httpbin.bar.mesh.internal"


def test_failover_carries_the_outlier_detection_and_the_priority_the_intent_gives() -> None:
    detection = {"consecutive5xxErrors": 7, "consecutiveGatewayErrors": 3, "interval": "10s",
                 "baseEjectionTime": "2m", "maxEjectionPercent": 50}
    docs = failover_mesh(failover={"priority": ["c2", "c1"], "outlierDetection": detection})
    out, _ = generated(mbcompile.failover, docs)
    rule = one(out["c1"], "DestinationRule", "foo", MESH_HOST)
    policy = rule["spec"]["trafficPolicy"]
    assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}
    # minHealthPercent 0: never send to an ejected cluster while another is left
    assert policy["outlierDetection"] == {**detection, "minHealthPercent": 0}
    assert policy["loadBalancer"]["localityLbSetting"]["enabled"] is True
    entry = one(out["c1"], "ServiceEntry", "foo", MESH_HOST)
    # c2 first, then c1 (the client's own instance), then c3, which the priority leaves out
    assert by_priority(entry, rule) == [["10.0.0.2"], [LOCAL], ["10.0.0.3"]]
    endpoints = {ep["address"]: ep for ep in entry["spec"]["endpoints"]}
    assert endpoints["10.0.0.2"]["ports"] == {"http": 31002}
    assert endpoints[LOCAL]["labels"][TLS_MODE_KEY] == "istio"


def test_failover_without_priority_prefers_the_clients_cluster_then_its_region() -> None:
    out, _ = generated(mbcompile.failover, failover_mesh(failover={}))
    rule = one(out["c1"], "DestinationRule", "foo", MESH_HOST)
    entry = one(out["c1"], "ServiceEntry", "foo", MESH_HOST)
    assert by_priority(entry, rule) == [[LOCAL], ["10.0.0.3"], ["10.0.0.2"]]
    assert rule["spec"]["trafficPolicy"]["outlierDetection"] == {
        "consecutive5xxErrors": 5, "interval": "5s", "baseEjectionTime": "30s",
        "maxEjectionPercent": 100, "minHealthPercent": 0}


def test_failover_with_weights_splits_by_them_with_locality_off() -> None:
    weights = {"c1": 20, "c2": 80, "c3": 0}
    docs = failover_mesh(failover={}, loadBalancing={"weights": weights})
    out, _ = generated(mbcompile.failover, docs)
    rule = one(out["c1"], "DestinationRule", "foo", MESH_HOST)["spec"]
    assert rule["trafficPolicy"]["loadBalancer"]["localityLbSetting"] == {"enabled": False}
    entry = one(out["c1"], "ServiceEntry", "foo", MESH_HOST)["spec"]
    assert {ep["address"]: ep["weight"] for ep in entry["endpoints"]} == {LOCAL: 20, "10.0.0.2": 80}
    assert not any("meshbridge.dev/tier-1" in ep.get("labels", {}) for ep in entry["endpoints"])


def test_failover_exports_the_mesh_internal_name_from_every_cluster_the_client_may_reach() -> None:
    out, _ = generated(mbcompile.failover, failover_mesh(failover={}))
    assert sorted(out) == ["c1", "c2", "c3"]
    for cluster in "c2", "c3":
        gateway = one(out[cluster], "Gateway", "istio-system", "httpbin-bar-mesh-internal")
        (server,) = gateway["spec"]["servers"]
        assert server["port"]["number"] == 15443 and server["tls"] == {"mode": "AUTO_PASSTHROUGH"}
        assert server["hosts"] == [MESH_HOST]
        entry = one(out[cluster], "ServiceEntry", "istio-system", MESH_HOST)["spec"]
        assert entry["endpoints"] == [{"address": LOCAL, "labels": TLS_MODE}]
    # c1 is served by its own instance: nobody elsewhere calls, so it exports nothing
    assert not [o for o in out["c1"] if o["kind"] == "Gateway"]
    # and the client's VirtualService sends every request of the port to the mesh-internal name
    routed, _ = generated(mbcompile.loadbalancing, failover_mesh(failover={}))
    service = one(routed["c1"], "VirtualService", "foo", "httpbin.bar")["spec"]
    assert service["http"] == [{"match": [{"port": 8000}], "route": [
        {"destination": {"host": MESH_HOST, "port": {"number": 8000}}}]}]


# -------------------------------------------------------------------------------------- authz


def closed_mesh() -> list[dict[str, Any]]:
    docs = [mesh(trustDomain="example.org"), *base(),
            doc("App", "curl", {"clusters": ["c1"], "serviceAccount": "curl-sa"}, "bar")]
    docs[4]["spec"]["selector"] = {"app": "httpbin", "track": "stable"}  # httpbin's pods
    clients = [
        {"app": "sleep", "namespace": "foo", "accessPoints": [
            {"paths": ["/status/*", "/headers"], "methods": ["GET"]},
            {"action": "DENY", "paths": ["/admin/*"]}]},
        {"app": "curl"},  # no access points: allowed everything
    ]
    return [*docs, intent(protocol="HTTP", clients=clients)]


def principal(ns: str, sa: str) -> dict[str, Any]:
    return {"source": {"principals": [f"example.org/ns/{ns}/sa/{sa}"]}}


def test_a_policy_allows_exactly_the_declared_clients_on_their_paths_and_methods() -> None:
    out, _ = generated(mbcompile.authz, closed_mesh())
    assert sorted(out) == ["c2"]  # where the server runs, not where its clients do
    allow = one(out["c2"], "AuthorizationPolicy", "bar", "httpbin")["spec"]
    assert allow["action"] == "ALLOW"
    assert allow["selector"] == {"matchLabels": {"app": "httpbin", "track": "stable"}}
    assert allow["rules"] == [
        {"from": [principal("foo", "sleep")],
         "to": [{"operation": {"paths": ["/status/*", "/headers"], "methods": ["GET"]}}]},
        {"from": [principal("bar", "curl-sa")]},
    ]
    deny = one(out["c2"], "AuthorizationPolicy", "bar", "httpbin-deny")["spec"]
    assert deny["action"] == "DENY"
    assert deny["rules"] == [{"from": [principal("foo", "sleep")],
                              "to": [{"operation": {"paths": ["/admin/*"]}}]}]


def test_every_intent_of_a_closed_app_gets_a_policy_and_external_traffic_is_let_in() -> None:
    docs = [*closed_mesh(),
            intent("httpbin-web", serviceName="httpbin-web", port=80, protocol="HTTP",
                   external={"host": "web.example.com"})]
    out, _ = generated(mbcompile.authz, docs)
    web = one(out["c2"], "AuthorizationPolicy", "bar", "httpbin-web")["spec"]
    assert web["rules"] == [
        {"from": [principal("foo", "sleep")]},  # no access points on this intent: everything
        {"from": [principal("istio-system", "istio-ingressgateway-service-account")]},
    ]
    assert listed(out["c2"]) == [("AuthorizationPolicy", "bar", n)
                                 for n in ("httpbin", "httpbin-deny", "httpbin-web")]


def test_an_open_app_gets_no_policy() -> None:
    docs = [mesh(), *base(), intent(protocol="HTTP"), intent("more", port=81, protocol="HTTP")]
    out, _ = generated(mbcompile.authz, docs)
    assert out == {}


# ------------------------------------------------------------------------------------ ingress

HOST = "httpbin.example.com"
CREDENTIAL = IngressCredential(cert="CERT PEM", key="KEY PEM", ca="CLIENT CA PEM")


@pytest.mark.parametrize(("protocol", "mode", "server", "route", "secret"), [
    ("HTTP", "MUTUAL",
     {"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
      "tls": {"mode": "MUTUAL", "credentialName": f"{HOST}-credential"}},
     "http", {"tls.crt": "CERT PEM", "tls.key": "KEY PEM", "ca.crt": "CLIENT CA PEM"}),
    ("TCP", "SIMPLE",
     {"port": {"number": 443, "name": "https", "protocol": "TLS"},
      "tls": {"mode": "SIMPLE", "credentialName": f"{HOST}-credential"}},
     "tcp", {"tls.crt": "CERT PEM", "tls.key": "KEY PEM"}),
    ("HTTPS", "PASSTHROUGH",
     {"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "tls": {"mode": "PASSTHROUGH"}},
     "tls", None),
])
def test_external_access_gives_the_gateway_route_and_credential_its_tls_mode_needs(
    protocol: str, mode: str, server: dict[str, Any], route: str, secret: dict[str, str] | None
) -> None:
    docs = placed([mesh(), *base(), intent(protocol=protocol, clients=[],
                                           external={"host": HOST, "tlsMode": mode})],
                  "httpbin", ["c1", "c2"])
    out, _ = generated(mbcompile.ingress, docs, Material(ingress={HOST: CREDENTIAL}))
    assert sorted(out) == ["c1", "c2"]  # every cluster that runs the server
    for objs in out.values():
        gateway = one(objs, "Gateway", "bar", "httpbin-ingress")["spec"]
        assert gateway == {"selector": {"istio": "ingressgateway"},
                           "servers": [{**server, "hosts": [HOST]}]}
        service = one(objs, "VirtualService", "bar", "httpbin-ingress")["spec"]
        assert service["hosts"] == [HOST] and service["gateways"] == ["httpbin-ingress"]
        (rule,) = service[route]
        assert rule["route"] == [{"destination": {"host": LOCAL, "port": {"number": 8000}}}]
        assert rule["match"] == ([{"port": 443, "sniHosts": [HOST]}] if route == "tls"
                                 else [{"port": 443}])
        secrets = [o for o in objs if o["kind"] == "Secret"]
        if secret is None:  # the service presents its own certificate
            assert secrets == []
        else:
            assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in secrets] == [
                ("istio-system", f"{HOST}-credential")]
            assert decoded(secrets[0]) == secret


def test_no_external_access_no_ingress_objects() -> None:
    out, _ = generated(mbcompile.ingress, [mesh(), *base(), intent(protocol="HTTP")],
                       Material(ingress={HOST: CREDENTIAL}))
    assert out == {}


# ------------------------------------------------------------------------------------- egress


def test_external_services_are_declared_only_in_the_clusters_they_name() -> None:
    mysql = {"hosts": ["mysql.db.example"], "ports": [{"number": 3306, "name": "mysql"}],
             "resolution": "DNS", "clusters": ["c1"]}
    web = {"hosts": ["api.example.com"],
           "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}
    pinned = {"hosts": ["legacy.example"], "addresses": ["172.20.0.9"],
              "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}],
              "endpoints": [{"address": "172.20.0.10", "ports": {"pg": 15432},
                             "labels": {"site": "old"}}],
              "clusters": ["c2"]}
    docs = [mesh(), *base(), doc("ExternalService", "mysql", mysql, "foo"),
            doc("ExternalService", "web", web, "foo"),
            doc("ExternalService", "pinned", pinned, "bar")]
    out, table = generated(mbcompile.egress, docs)
    assert listed(out["c1"]) == [("ServiceEntry", "foo", "mysql"), ("ServiceEntry", "foo", "web")]
    assert listed(out["c2"]) == [("ServiceEntry", "bar", "pinned"), ("ServiceEntry", "foo", "web")]
    for objs in out.values():
        for obj in objs:
            assert obj["spec"]["location"] == "MESH_EXTERNAL"
            assert "exportTo" not in obj["spec"]  # every namespace of the cluster sees it
    db = one(out["c1"], "ServiceEntry", "foo", "mysql")["spec"]
    assert db["hosts"] == ["mysql.db.example"] and db["resolution"] == "DNS"
    assert db["ports"] == [{"number": 3306, "name": "mysql", "protocol": "TCP"}]
    assert db["addresses"] == [table[("c1", "mysql.db.example")]] and in_pool(db["addresses"][0])
    site = one(out["c2"], "ServiceEntry", "foo", "web")["spec"]
    assert "addresses" not in site and site["resolution"] == "DNS"
    old = one(out["c2"], "ServiceEntry", "bar", "pinned")["spec"]
    assert old["addresses"] == ["172.20.0.9"] and old["resolution"] == "STATIC"
    assert old["endpoints"] == [
        {"address": "172.20.0.10", "ports": {"pg": 15432}, "labels": {"site": "old"}}]


# ----------------------------------------------------------------------------- istio_operator


def gateway_ports(operator: Obj) -> dict[int, dict[str, Any]]:
    (gateway,) = operator["spec"]["components"]["ingressGateways"]
    return {p["port"]: p for p in gateway["k8s"]["service"]["ports"]}


def test_each_clusters_istio_operator_opens_its_own_gateway_port() -> None:
    docs = [mesh(trustDomain="example.org", istio={"gatewayNodePort": 30500}), *base()]
    docs[2]["spec"]["gateway"]["port"] = 31002
    out, _ = generated(mbcompile.istio_operator, docs)
    assert sorted(out) == ["c1", "c2"]
    ports = {}
    for cluster, objs in out.items():
        (operator,) = objs
        assert (operator["metadata"]["namespace"], operator["metadata"]["name"]) == (
            "istio-system", "meshbridge")
        ports[cluster] = gateway_ports(operator)[15443]["nodePort"]
        config = operator["spec"]["meshConfig"]
        assert config["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
        assert config["trustDomain"] == "example.org"
        assert config["defaultConfig"]["proxyMetadata"]["ISTIO_META_DNS_CAPTURE"] == "true"
    assert ports == {"c1": 30500, "c2": 31002}


def test_the_istio_operator_follows_the_meshs_istio_settings() -> None:
    istio = {"outboundTrafficPolicy": "ALLOW_ANY", "dnsCapture": False, "profile": "default"}
    out, _ = generated(mbcompile.istio_operator, [mesh(istio=istio), *base()])
    (operator,) = out["c1"]
    assert operator["spec"]["profile"] == "default"
    config = operator["spec"]["meshConfig"]
    assert config["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}
    assert "ISTIO_META_DNS_CAPTURE" not in config["defaultConfig"]["proxyMetadata"]
    assert gateway_ports(operator)[15443]["nodePort"] == 32001


def test_every_istio_operator_lets_roots_change_under_traffic() -> None:
    # istiod loads a cacerts whose roots changed, publishes and pushes them (ISTIO_MULTIROOT_MESH);
    # the proxies take the push at once (PROXY_CONFIG_XDS_AGENT): docs/pki.md
    for settings, ttl in (({}, None), ({"workloadCertTTL": "1m"}, "1m")):
        out, _ = generated(mbcompile.istio_operator, [mesh(istio=settings), *base()])
        for (operator,) in out.values():
            metadata = operator["spec"]["meshConfig"]["defaultConfig"]["proxyMetadata"]
            env = operator["spec"]["values"]["pilot"]["env"]
            assert env["ISTIO_MULTIROOT_MESH"] == "true"
            assert metadata["PROXY_CONFIG_XDS_AGENT"] == "true"
            # a workload certificate lifetime is asked by each proxy, and istiod's default too
            assert metadata.get("SECRET_TTL") == ttl
            assert env.get("DEFAULT_WORKLOAD_CERT_TTL") == ttl


@pytest.mark.parametrize(("ttl", "message"), [
    ("30s", "'30s': a workload certificate lifetime is 1m to 2160h"),
    ("2161h", "'2161h': a workload certificate lifetime is 1m to 2160h"),
    ("1d", "'1d' is not a duration such as 500ms, 5s or 2m"),
])
def test_a_workload_certificate_lifetime_istio_would_not_issue_is_refused(
    cli, tmp_path, ttl: str, message: str
) -> None:
    assert_rejected(cli, tmp_path, [mesh(istio={"workloadCertTTL": ttl}), *base()],
                    f"Mesh/default spec.istio.workloadCertTTL: {message}")


# -------------------------------------------------------------------------------- pki_secrets


def cluster_ca(cluster: str) -> ClusterCA:
    return ClusterCA(ca_cert=f"{cluster} CA CERT", ca_key=f"{cluster} CA KEY",
                     root_cert="ROOT CERT", cert_chain=f"{cluster} CHAIN")


def test_cacerts_holds_the_four_files_istiod_reads() -> None:
    material = Material(cacerts={"c1": cluster_ca("c1")})
    out, _ = generated(mbcompile.pki_secrets, [mesh(), *base()], material)
    assert sorted(out) == ["c1"]  # no material for c2: no Secret for it
    (secret,) = out["c1"]
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == (
        "istio-system", "cacerts")
    assert secret["type"] == "Opaque"
    assert decoded(secret) == {"ca-cert.pem": "c1 CA CERT", "ca-key.pem": "c1 CA KEY",
                               "root-cert.pem": "ROOT CERT", "cert-chain.pem": "c1 CHAIN"}


def test_no_material_no_cacerts() -> None:
    out, _ = generated(mbcompile.pki_secrets, [mesh(), *base()])
    assert out == {}


# --------------------------------------------------------------------- all generators alike


def everything() -> list[dict[str, Any]]:
    """A mesh on which every generator gives objects to both c1 and c2."""
    docs = placed([mesh(), *base()], "sleep", ["c1", "c2"])  # httpbin in c2
    return [
        *docs,
        doc("App", "web", {"clusters": ["c1", "c2"]}, "bar"),
        doc("App", "api", {"clusters": ["c1"]}, "baz"),
        doc("App", "caller", {"clusters": ["c2"]}, "baz"),
        intent(protocol="HTTP", clients=[{"app": "sleep", "namespace": "foo", "accessPoints": [
            {"action": "DENY", "paths": ["/x"]}]}]),
        intent("web", app="web", port=80, protocol="HTTP", failover={},
               clients=[{"app": "sleep", "namespace": "foo",
                         "accessPoints": [{"methods": ["GET"]}]}],
               external={"host": "web.example.com"}),
        doc("InboundIntent", "api", {"app": "api", "port": 90, "clients": [{"app": "caller"}]},
            "baz"),
        doc("ExternalService", "db", {"hosts": ["db.example"],
                                      "ports": [{"number": 5432, "name": "pg"}]}, "foo"),
        doc("ExternalService", "cache", {"hosts": ["cache.example"],
                                         "ports": [{"number": 6379, "name": "redis"}]}, "foo"),
    ]


EVERYTHING_MATERIAL = Material(
    cacerts={"c1": cluster_ca("c1"), "c2": cluster_ca("c2")},
    ingress={"web.example.com": CREDENTIAL},
)


def test_the_generators_tested_here_are_the_pipelines() -> None:
    assert [m.build for m in MODULES] == list(GENERATORS)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_only_computes_just_the_clusters_asked_for(module: ModuleType) -> None:
    full, _ = generated(module, everything(), EVERYTHING_MATERIAL)
    assert sorted(full) == ["c1", "c2"], "the mesh should give this generator both clusters"
    for cluster in "c1", "c2":
        part, _ = generated(module, everything(), EVERYTHING_MATERIAL, only=frozenset({cluster}))
        assert part == {cluster: full[cluster]}
    none, _ = generated(module, everything(), EVERYTHING_MATERIAL, only=frozenset())
    assert none == {}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_same_intents_give_the_same_objects(module: ModuleType) -> None:
    first, _ = generated(module, everything(), EVERYTHING_MATERIAL)
    again, _ = generated(module, everything(), EVERYTHING_MATERIAL)
    assert first and again == first
    # nor does the documents' order in the input change any object (files are written in apply
    # order whatever order the generators give them in)
    backwards, _ = generated(module, everything()[::-1], EVERYTHING_MATERIAL)
    assert {c: ordered(objs) for c, objs in backwards.items()} == {
        c: ordered(objs) for c, objs in first.items()}
