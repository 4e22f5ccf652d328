"""Properties over random valid meshes: VIPs unique per cluster and stable as intents come and go,
byte-identical re-renders, and every client-side endpoint pointing at the right gateway."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbridge import compile as mbcompile
from meshbridge.compile.vips import lookup
from meshbridge.errors import InvalidInput
from meshbridge.loading import Source, load
from meshbridge.output.emitter import files
from meshbridge.viprecord import VipRecord

API = "meshbridge.dev/v1alpha1"


@st.composite
def meshes(draw: st.DrawFn) -> list[dict[str, Any]]:
    n_clusters = draw(st.integers(2, 5))
    clusters = [f"k{i}" for i in range(n_clusters)]
    docs: list[dict[str, Any]] = [
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": c},
         "spec": {"gateway": {"address": f"10.0.{i}.1", "port": 31000 + i}}}
        for i, c in enumerate(clusters)
    ]
    n_apps = draw(st.integers(2, 8))
    apps = []
    for i in range(n_apps):
        placed = draw(st.lists(st.sampled_from(clusters), min_size=1, max_size=3, unique=True))
        ns = draw(st.sampled_from(["ns-a", "ns-b"]))
        apps.append((ns, f"app{i}", placed))
        docs.append({"apiVersion": API, "kind": "App", "metadata": {"name": f"app{i}", "namespace": ns},
                     "spec": {"clusters": placed}})
    for ns, name, placed in apps:
        if not draw(st.booleans()):
            continue
        clients = draw(st.lists(st.sampled_from(apps), max_size=3, unique_by=lambda a: a[:2]))
        spec: dict[str, Any] = {
            "app": name, "port": draw(st.sampled_from([80, 8000, 9090])),
            "protocol": draw(st.sampled_from(["TCP", "HTTP", "GRPC", "TLS"])),
            "clients": [{"app": c[1], "namespace": c[0]} for c in clients],
        }
        if len(placed) > 1 and draw(st.booleans()):
            first = draw(st.integers(0, 100))
            weights = {placed[0]: first, placed[1]: 100 - first}
            for extra in placed[2:]:
                weights[extra] = 0
            spec["loadBalancing"] = {"weights": weights}
        docs.append({"apiVersion": API, "kind": "InboundIntent",
                     "metadata": {"name": name, "namespace": ns}, "spec": spec})
    return docs


def _blueprint(docs: list[dict[str, Any]], previous: list[VipRecord]) -> mbcompile.Blueprint:
    return mbcompile.blueprint(load([Source("m.yaml", yaml.safe_dump_all(docs))]), previous)


def _vips_by_cluster(objs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for cluster, items in objs.items():
        for o in items:
            if o["kind"] == "ServiceEntry" and "addresses" in o["spec"]:
                host = o["spec"]["hosts"][0]
                out.setdefault(cluster, {})
                assert out[cluster].get(host, o["spec"]["addresses"][0]) == o["spec"]["addresses"][0]
                out[cluster][host] = o["spec"]["addresses"][0]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes())
def test_vips_unique_and_rerender_identical(docs: list[dict[str, Any]]) -> None:
    blueprint = _blueprint(docs, [])
    objs = mbcompile.objects(blueprint)
    for cluster, hosts in _vips_by_cluster(objs).items():
        assert len(set(hosts.values())) == len(hosts), f"duplicate VIP in {cluster}"
    again = _blueprint(docs, blueprint.vips)
    assert again.vips == blueprint.vips
    assert files(mbcompile.objects(again)) == files(objs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes(), data=st.data())
def test_vips_stable_when_intents_are_removed_and_added(docs: list[dict[str, Any]], data: st.DataObject) -> None:
    blueprint = _blueprint(docs, [])
    before = lookup(blueprint.vips)
    intents = [d for d in docs if d["kind"] == "InboundIntent"]
    dropped = data.draw(st.lists(st.sampled_from(intents), unique_by=lambda d: id(d))) if intents else []
    fewer = [d for d in docs if not any(d is x for x in dropped)]
    smaller = _blueprint(fewer, blueprint.vips)
    for key, address in lookup(smaller.vips).items():
        assert before.get(key, address) == address, "a kept host's VIP moved on removal"
    restored = _blueprint(docs, smaller.vips)
    for key, address in lookup(restored.vips).items():
        assert before.get(key) == address, "re-adding intents moved a VIP"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes())
def test_client_endpoints_point_at_the_server_gateway(docs: list[dict[str, Any]]) -> None:
    gateways = {d["metadata"]["name"]: d["spec"]["gateway"] for d in docs if d["kind"] == "Cluster"}
    objs = mbcompile.objects(_blueprint(docs, []))
    for cluster, items in objs.items():
        for o in items:
            spec = o.get("spec", {})
            if o["kind"] != "ServiceEntry" or o["metadata"]["namespace"] == "istio-system":
                continue
            host = spec["hosts"][0]
            if host.endswith(".svc.cluster.local"):
                continue
            server = host.rsplit(".", 1)[1]
            assert server != cluster
            (endpoint,) = spec["endpoints"]
            assert endpoint["address"] == gateways[server]["address"]
            assert set(endpoint["ports"].values()) == {gateways[server]["port"]}
            assert set(endpoint["ports"]) == {p["name"] for p in spec["ports"]}
            # and the server cluster exports that host through its gateway
            exported = [g for g in objs[server] if g["kind"] == "Gateway"
                        and host in g["spec"]["servers"][0]["hosts"]]
            assert exported and exported[0]["spec"]["servers"][0]["port"]["number"] == 15443


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes(), data=st.data())
def test_one_cluster_alone_equals_its_part_of_the_whole(docs: list[dict[str, Any]], data: st.DataObject) -> None:
    blueprint = _blueprint(docs, [])
    whole = mbcompile.objects(blueprint)
    cluster = data.draw(st.sampled_from(sorted(whole)))
    assert mbcompile.objects(blueprint, only={cluster}) == {cluster: whole[cluster]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes(), data=st.data())
def test_an_explicit_address_never_moves_an_allocated_vip(docs: list[dict[str, Any]], data: st.DataObject) -> None:
    blueprint = _blueprint(docs, [])
    before = lookup(blueprint.vips)
    clusters = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Cluster")
    cluster = data.draw(st.sampled_from(clusters))
    held = sorted(a for (c, _), a in before.items() if c == cluster)
    address = data.draw(st.sampled_from([*held, "240.0.0.250"]))
    pinned = {"apiVersion": API, "kind": "ExternalService",
              "metadata": {"name": "pinned", "namespace": "ns-a"},
              "spec": {"hosts": ["pinned.example"], "addresses": [address],
                       "ports": [{"number": 3306, "name": "tcp"}],
                       "endpoints": [{"address": "172.16.0.1"}], "clusters": [cluster]}}
    try:
        after = _blueprint([*docs, pinned], blueprint.vips)
    except InvalidInput as exc:
        assert address in held
        (problem,) = exc.problems
        assert (problem.name, problem.path) == ("pinned", "spec.addresses[0]")
        return
    assert address not in held
    now = lookup(after.vips)
    assert {k: now[k] for k in before} == before, "an explicit address moved a VIP"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=meshes(), data=st.data())
def test_no_vip_ever_moves_over_a_sequence_of_adds_removes_and_renames(
    docs: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Intents come and go and are renamed, one change after another, each planned against the
    table the previous one left: a host keeps the VIP it was first given for the whole
    sequence (also after being removed and added back), and no two hosts of a cluster share one."""
    pool = [d for d in docs if d["kind"] == "InboundIntent"]
    current = [d for d in docs if d["kind"] != "InboundIntent" or data.draw(st.booleans())]
    records: list[VipRecord] = []
    ever: dict[tuple[str, str], str] = {}
    for step in range(data.draw(st.integers(1, 8))):
        intents = [d for d in current if d["kind"] == "InboundIntent"]
        op = data.draw(st.sampled_from(["add", "remove", "rename-document", "rename-service"]))
        if op == "add" and pool:
            current = [*current, copy.deepcopy(data.draw(st.sampled_from(pool)))]
        elif op == "remove" and intents:
            gone = data.draw(st.sampled_from(intents))
            current = [d for d in current if d is not gone]
        elif op.startswith("rename") and intents:
            target = data.draw(st.sampled_from(intents))
            renamed = copy.deepcopy(target)
            if op == "rename-document":  # same service, same hosts
                renamed["metadata"]["name"] = f"{target['metadata']['name']}-r{step}"
            else:  # the service itself: new hosts, the old ones released
                renamed["spec"]["serviceName"] = f"svc{step}"
            current = [renamed if d is target else d for d in current]
        try:
            planned = _blueprint(current, records)
        except InvalidInput:  # a change validation refuses (a name taken twice): not made
            continue
        records = planned.vips
        for cluster, hosts in _vips_by_cluster(mbcompile.objects(planned)).items():
            assert len(set(hosts.values())) == len(hosts), f"duplicate VIP in {cluster}"
        for key, address in lookup(records).items():
            assert ever.setdefault(key, address) == address, f"{key} moved after {op}"
