"""failover: what users get wrong is rejected with a clear message, and for every valid mesh the
generated endpoints carry exactly the declared weights or the declared order.

Order is checked the way Istio reads it: ``failoverPriority`` entries against endpoint labels, an
endpoint's priority being the number of leading entries it does not match from the end
(pilot/pkg/networking/core/loadbalancer: ``lowestPriority - j`` at the first mismatch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intents import assert_rejected, base, doc, intent

from meshbridge import compile as mbcompile
from meshbridge.compile import naming
from meshbridge.loading import Source, load

REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"


def two_clusters() -> list[dict[str, Any]]:
    docs = base()
    docs[3]["spec"]["clusters"] = ["c1", "c2"]
    return docs


def test_failover_on_an_app_in_one_cluster(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*base(), intent(protocol="HTTP", failover={})],
                    "InboundIntent/httpbin spec.failover: app 'httpbin' runs in 1 cluster (c2);"
                    " failover needs an app placed in more than one")


def test_failover_on_a_tcp_port(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*two_clusters(), intent(failover={})],
                    "spec.failover: failover needs an HTTP, HTTP2 or GRPC port, not TCP")


def test_priority_naming_a_cluster_the_app_does_not_run_in(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(), intent(protocol="HTTP", failover={"priority": ["c2", "c9"]})]
    assert_rejected(cli, tmp_path, docs,
                    "spec.failover.priority[1]: app 'httpbin' does not run in cluster 'c9'")


def test_priority_with_weights(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(), intent(protocol="HTTP", failover={"priority": ["c2", "c1"]},
                                    loadBalancing={"weights": {"c1": 50, "c2": 50}})]
    assert_rejected(cli, tmp_path, docs, "spec.failover.priority: priority orders clusters")


def test_ejection_percent_out_of_range(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(),
            intent(protocol="HTTP", failover={"outlierDetection": {"maxEjectionPercent": 120}})]
    assert_rejected(cli, tmp_path, docs,
                    "spec.failover.outlierDetection.maxEjectionPercent: Input should be less than "
                    "or equal to 100")


def test_a_duration_that_is_not_one(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(),
            intent(protocol="HTTP", failover={"outlierDetection": {"interval": "5 seconds"}})]
    assert_rejected(cli, tmp_path, docs, "spec.failover.outlierDetection.interval: '5 seconds' "
                                         "is not a duration such as 500ms, 5s or 2m")


def test_detection_switched_off_entirely(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(), intent(protocol="HTTP", failover={"outlierDetection": {
        "consecutive5xxErrors": 0}})]
    assert_rejected(cli, tmp_path, docs, "no failure would ever be detected")


def test_two_ports_of_one_service_disagreeing(cli, tmp_path: Path) -> None:
    docs = [*two_clusters(), intent(protocol="HTTP", failover={}),
            intent("httpbin-admin", port=9000, serviceName="httpbin", protocol="HTTP",
                   failover={"priority": ["c1", "c2"]})]
    assert_rejected(cli, tmp_path, docs, "InboundIntent/httpbin-admin spec.failover: service "
                                         "httpbin.bar has one mesh-internal name")


def test_a_server_without_gateway_it_fails_over_to(cli, tmp_path: Path) -> None:
    docs = two_clusters()
    del docs[0]["spec"]["gateway"]
    docs.append(doc("App", "far", {"clusters": ["c2"]}, "foo"))
    spec = {"protocol": "HTTP", "failover": {},
            "clients": [{"app": "sleep", "namespace": "foo"}, {"app": "far", "namespace": "foo"}]}
    assert_rejected(cli, tmp_path, [*docs, intent(**spec)],
                    "Cluster/c1 spec.gateway: cluster 'c1' serves httpbin.bar to a client in "
                    "cluster 'c2'")


# ----------------------------------------------------------------------- generated endpoints


def istio_priority(entries: list[str], labels: dict[str, str]) -> int:
    """The priority istiod gives an endpoint with ``labels`` for these failoverPriority entries
    (all of the "label=value" form)."""
    for j, entry in enumerate(entries):
        key, _, value = entry.partition("=")
        if labels.get(key) != value:
            return len(entries) - j
    return 0


def failover_objects(docs: list[dict[str, Any]], cluster: str, host: str
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    blueprint = mbcompile.blueprint(load([Source("m.yaml", yaml.safe_dump_all(docs))]), [])
    objs = mbcompile.objects(blueprint, only=[cluster])[cluster]
    entry = next(o for o in objs if o["kind"] == "ServiceEntry" and o["metadata"]["name"] == host)
    rule = next(o for o in objs if o["kind"] == "DestinationRule"
                and o["metadata"]["name"] == host)
    return entry, rule


@st.composite
def failover_meshes(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    n = draw(st.integers(2, 6))
    names = [f"k{i}" for i in range(n)]
    docs: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        labels = {}
        if draw(st.booleans()):
            labels[REGION] = draw(st.sampled_from(["east", "west"]))
            if draw(st.booleans()):
                labels[ZONE] = draw(st.sampled_from(["a", "b"]))
        docs.append(doc("Cluster", name, {"gateway": {"address": f"10.9.{i}.1"}}, labels=labels))
    placed = draw(st.lists(st.sampled_from(names), min_size=2, max_size=n, unique=True))
    client = draw(st.sampled_from(names))
    docs += [doc("App", "api", {"clusters": placed}, "shop"),
             doc("App", "web", {"clusters": [client]}, "shop")]
    spec: dict[str, Any] = {"app": "api", "port": 8080, "protocol": "HTTP",
                            "clients": [{"app": "web"}], "failover": {}}
    mode = draw(st.sampled_from(["locality", "priority", "weights"]))
    if mode == "priority":
        spec["failover"]["priority"] = draw(st.permutations(placed))[: draw(
            st.integers(1, len(placed)))]
    elif mode == "weights":
        cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=len(placed) - 1,
                                    max_size=len(placed) - 1)))
        bounds = [0, *cuts, 100]
        spec["loadBalancing"] = {"weights": {c: bounds[i + 1] - bounds[i]
                                             for i, c in enumerate(placed)}}
    docs.append(doc("InboundIntent", "api", spec, "shop"))
    return docs, {"client": client, "placed": placed, "spec": spec, "mode": mode,
                  "labels": {d["metadata"]["name"]: d["metadata"].get("labels", {})
                             for d in docs if d["kind"] == "Cluster"}}


def _cluster_of(endpoint: dict[str, Any], client: str) -> str:
    if endpoint["address"] == naming.local_host("api", "shop"):
        return client
    return f"k{endpoint['address'].split('.')[2]}"


def _locality_rank(labels: dict[str, dict[str, str]], client: str, other: str) -> int:
    if other == client:
        return 0
    mine, theirs = labels[client], labels[other]
    if mine.get(REGION) == theirs.get(REGION):
        return 1 if mine.get(ZONE) == theirs.get(ZONE) else 2
    return 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(failover_meshes())
def test_endpoints_carry_the_declared_weights_and_order(case: tuple[list[dict[str, Any]],
                                                                     dict[str, Any]]) -> None:
    docs, facts = case
    client, spec = facts["client"], facts["spec"]
    entry, rule = failover_objects(docs, client, naming.mesh_host("api", "shop"))
    endpoints = entry["spec"]["endpoints"]
    by_cluster = {_cluster_of(e, client): e for e in endpoints}
    policy = rule["spec"]["trafficPolicy"]
    assert policy["outlierDetection"]["minHealthPercent"] == 0
    if facts["mode"] == "weights":
        declared = {c: w for c, w in spec["loadBalancing"]["weights"].items() if w > 0}
        assert {c: e["weight"] for c, e in by_cluster.items()} == declared
        assert sum(e["weight"] for e in endpoints) == 100
        assert policy["loadBalancer"]["localityLbSetting"] == {"enabled": False}
        return
    assert set(by_cluster) == set(facts["placed"])
    entries = policy["loadBalancer"]["localityLbSetting"].get("failoverPriority", [])
    prio = {c: istio_priority(entries, e.get("labels", {})) for c, e in by_cluster.items()}
    if facts["mode"] == "priority":
        order = spec["failover"]["priority"]
        expected = {c: order.index(c) if c in order else len(order) for c in facts["placed"]}
    else:
        expected = {c: _locality_rank(facts["labels"], client, c) for c in facts["placed"]}
    # Istio's priorities order the clusters exactly as declared (dense: no empty priority)
    for a in facts["placed"]:
        for b in facts["placed"]:
            assert (prio[a] < prio[b]) == (expected[a] < expected[b]), (prio, expected)
    assert sorted(set(prio.values())) == list(range(len(set(prio.values()))))
