"""usecases.graph: the calls a mesh's intents allow, what was made for each, and its states."""

from __future__ import annotations

from helpers import EXAMPLES

from meshbridge.usecases import graph as graph_uc
from meshbridge.usecases.render import validate
from meshbridge.usecases.sources import read_sources
from meshbridge.wire.graph import MeshGraph


def shop(statuses: list[dict] = ()) -> MeshGraph:
    return graph_uc.of_snapshot(validate(read_sources([str(EXAMPLES / "three-clusters")])),
                                statuses)


def test_every_call_with_its_port_split_and_failover_order() -> None:
    edges = {(e.source, e.target): e for e in shop().edges}
    frontend = "app:shop/frontend@east-1"
    # failover by locality: own cluster, then the same region, then the other region
    assert [edges[(frontend, f"app:shop/catalog@{c}")].order for c in ("east-1", "east-2", "west-1")] == [1, 2, 3]
    assert edges[(frontend, "app:shop/catalog@east-1")].local
    assert {c: edges[(frontend, f"app:shop/cart@{c}")].weight for c in ("east-2", "west-1")} == {
        "east-2": 70, "west-1": 30}
    assert edges[(frontend, "app:shop/cart@east-2")].label == "9090/GRPC · 70%"
    # cart runs in east-2 and west-1; payments only in west-1: both instances call it there
    assert {s for s, t in edges if t == "app:pay/payments@west-1"} == {
        "app:shop/cart@east-2", "app:shop/cart@west-1"}
    assert edges[("ingress:shop.example.com", frontend)].kind == "ingress"
    assert edges[("cluster:west-1", "egress:pay/card-processor")].label == "443/HTTPS"
    assert len(edges) == 9


def test_regions_and_objects_by_intent_named_never_their_content() -> None:
    g = shop()
    assert [(r.label, r.clusters) for r in g.regions] == [
        ("east", ["east-1", "east-2"]), ("west", ["west-1"])]
    cart = next(i for i in g.intents if i.id == "shop/cart")
    made = {(o.cluster, o.kind, o.namespace, o.name) for o in cart.objects}
    assert ("east-1", "VirtualService", "shop", "cart.shop") in made
    frontend = next(i for i in g.intents if i.id == "shop/frontend")
    assert ("east-1", "Secret", "istio-system", "shop.example.com-credential") in {
        (o.cluster, o.kind, o.namespace, o.name) for o in frontend.objects}
    east1 = next(c for c in g.clusters if c.name == "east-1")
    assert {(o.kind, o.name) for o in east1.objects} >= {("Secret", "cacerts"),
                                                         ("IstioOperator", "meshbridge")}
    text = g.model_dump_json()
    assert "BEGIN" not in text and "240." not in text  # no key, certificate or VIP


def test_states_come_from_the_recorded_apply() -> None:
    now = "2026-12-01T10:00:00+00:00"
    records = [
        {"cluster": "east-1", "state": "Applied", "error": "", "time": now, "objects": [
            {"object": "VirtualService/shop/cart.shop", "state": "Applied",
             "reason": "drift: changed outside meshbridge"}]},
        {"cluster": "east-2", "state": "Failed", "error": "refused", "time": now, "objects": []},
        {"cluster": "west-1", "state": "Unreachable", "error": "timed out", "time": now,
         "objects": [{"object": "ServiceEntry/pay/card-processor", "state": "Unreachable"}]},
    ]
    g = shop(records)
    states = {c.name: c.state for c in g.clusters}
    # east-1's other objects were not in that apply: the cluster is as bad as its worst
    assert states == {"east-1": "drift", "east-2": "failing", "west-1": "unreachable"}
    cart = next(i for i in g.intents if i.id == "shop/cart")
    vs = next(o for o in cart.objects if o.cluster == "east-1" and o.kind == "VirtualService")
    assert (vs.state, vs.reason) == ("drift", "drift: changed outside meshbridge")
    egress = next(e for e in g.edges if e.kind == "egress")
    assert egress.state == "unreachable"
    assert {s.name for s in g.states} == {"delivered", "applied", "pending", "drift", "failing",
                                          "unreachable"}
    assert next(c for c in g.clusters if c.name == "east-2").error == "refused"


def test_a_cluster_whose_proxies_all_acknowledged_its_change_shows_delivered() -> None:
    now = "2026-12-01T10:00:00+00:00"
    snap = validate(read_sources([str(EXAMPLES / "three-clusters")]))
    topo = graph_uc.topology(graph_uc.mbcompile.blueprint(snap, []), secrets=True)
    every = {name: [f"{o.kind}/{o.namespace}/{o.name}" for o in c.objects]
             for c in shop().clusters for name in [c.name]}
    made = {i.id: i for i in shop().intents}
    for intent in made.values():
        for o in intent.objects:
            every[o.cluster].append(f"{o.kind}/{o.namespace}/{o.name}")
    records = [{"cluster": name, "state": "Applied", "error": "", "time": now,
                "objects": [{"object": ref, "state": "Applied", "reason": "unchanged"}
                            for ref in refs]} for name, refs in every.items()]
    g = graph_uc.graph(topo, records, "1.1", delivered=["east-1"])
    states = {c.name: c.state for c in g.clusters}
    assert (states["east-1"], states["east-2"]) == ("delivered", "applied")
    cart = next(i for i in g.intents if i.id == "shop/cart")
    assert {o.state for o in cart.objects if o.cluster == "east-1"} == {"delivered"}
    # an edge between a delivered cluster and one that is not shows the lesser state
    assert next(e for e in g.edges if e.target == "app:shop/cart@east-2").state == "applied"
