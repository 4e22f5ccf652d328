"""Discovered placement in compile: ``discover: {}`` in the model and the cross-document rules,
the placement handed in as an input (routes follow it, the same placement gives the same
objects), and the declared splits a placement does not cover (reported, never rewritten)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from helpers import write_docs
from intents import assert_rejected, doc, intent

from meshbridge import compile as mbcompile
from meshbridge.compile.placement import coverage, wanted
from meshbridge.loading import Source, load
from meshbridge.output.emitter import dump

KUBE = {"path": "/nonexistent/kubeconfig"}


def mesh_docs(**httpbin_spec: Any) -> list[dict[str, Any]]:
    """sleep in c1 (explicit), httpbin discovered over c1, c2, c3 (all readable)."""
    clusters = [
        doc("Cluster", f"c{i}", {"gateway": {"address": f"10.0.0.{i}"}, "kubeconfig": KUBE},
            labels={"tier": "gold" if i < 3 else "tin"})
        for i in (1, 2, 3)
    ]
    return [
        *clusters,
        doc("App", "sleep", {"clusters": ["c1"]}, "foo"),
        doc("App", "httpbin", {"discover": {}, **httpbin_spec}, "bar"),
    ]


def snapshot(docs: list[dict[str, Any]], found: dict[tuple[str, str], frozenset[str]]
             ) -> mbcompile.Blueprint:
    intents = load([Source("mesh.yaml", yaml.safe_dump_all(docs, sort_keys=False))])
    return mbcompile.blueprint(intents, [], found)


def rendered(bp: mbcompile.Blueprint) -> dict[str, bytes]:
    return {c: b"".join(dump(o) for o in objs) for c, objs in mbcompile.objects(bp).items()}


def hosts(bp: mbcompile.Blueprint, cluster: str) -> set[str]:
    return {h for o in mbcompile.objects(bp)[cluster] if o["kind"] == "ServiceEntry"
            for h in o["spec"]["hosts"]}


HTTPBIN = ("bar", "httpbin")


# ------------------------------------------------------------------------------------ the model


def test_discover_with_clusters_is_exit_2(cli, tmp_path: Path) -> None:
    docs = mesh_docs(clusters=["c2"])
    assert_rejected(cli, tmp_path, docs, "App/httpbin spec: ",
                    "give clusters or discover, not both")


def test_discover_with_a_selector_and_alone_are_valid(cli, tmp_path: Path) -> None:
    for spec in ({}, {"clusterSelector": {"matchLabels": {"tier": "gold"}}}):
        src = write_docs(tmp_path / "in" / "mesh.yaml", [*mesh_docs(**spec), intent()])
        result = cli("validate", "-f", str(src))
        assert result.exit_code == 0, result.stderr


def test_a_cluster_it_may_run_in_without_kubeconfig_is_exit_2_naming_both(
    cli, tmp_path: Path
) -> None:
    docs = mesh_docs()
    del docs[2]["spec"]["kubeconfig"]
    assert_rejected(cli, tmp_path, [*docs, intent()],
                    "App/httpbin spec.discover: Cluster 'c3' has no spec.kubeconfig",
                    "App bar/httpbin")


def test_the_selector_leaves_such_a_cluster_out(cli, tmp_path: Path) -> None:
    docs = mesh_docs(clusterSelector={"matchLabels": {"tier": "gold"}})
    del docs[2]["spec"]["kubeconfig"]  # c3 is tin
    src = write_docs(tmp_path / "in" / "mesh.yaml", [*docs, intent()])
    assert cli("validate", "-f", str(src)).exit_code == 0


def test_a_server_credential_without_a_gateway_address_is_exit_2(cli, tmp_path: Path) -> None:
    docs = mesh_docs()
    docs[1]["spec"] = {"kubeconfig": {"credential": "c2"}}
    assert_rejected(cli, tmp_path, [*docs, intent()],
                    "App/httpbin spec.discover: Cluster 'c2' has no spec.gateway.address")


def test_weights_may_only_name_clusters_it_may_run_in(cli, tmp_path: Path) -> None:
    docs = mesh_docs(clusterSelector={"matchLabels": {"tier": "gold"}})
    lb = {"weights": {"c1": 50, "c3": 50}}
    assert_rejected(cli, tmp_path, [*docs, intent(loadBalancing=lb)],
                    "spec.loadBalancing.weights.c3: app 'httpbin' may not run in cluster 'c3' "
                    "(it may run in: c1, c2)")


# ------------------------------------------------------------------------------ the placement


def test_routes_follow_the_placement_handed_in() -> None:
    docs = [*mesh_docs(), intent()]
    in_c2 = snapshot(docs, {HTTPBIN: frozenset({"c2"})})
    in_c3 = snapshot(docs, {HTTPBIN: frozenset({"c3"})})
    assert in_c2.snapshot.placement[HTTPBIN] == ("c2",)
    assert hosts(in_c2, "c1") == {"httpbin.bar.c2"}
    assert hosts(in_c3, "c1") == {"httpbin.bar.c3"}
    # the same placement gives the same bytes, whatever else (a placement of another order)
    again = snapshot(docs, {HTTPBIN: frozenset(["c2"]), ("zz", "none"): frozenset()})
    assert rendered(again) == rendered(in_c2)


def test_an_app_found_nowhere_gets_no_routes() -> None:
    bp = snapshot([*mesh_docs(), intent(protocol="HTTP", failover={})], {})
    assert bp.snapshot.placement[HTTPBIN] == ()
    assert all(o["kind"] == "IstioOperator" for o in mbcompile.objects(bp)["c1"])


def test_failover_follows_one_instance_under_the_ordinary_name() -> None:
    """A discovered App with ``failover: {}`` in one cluster: clients call the ordinary name,
    routed to the cluster it is found in (the lab moves it between clusters this way)."""
    docs = [*mesh_docs(), intent(protocol="HTTP", failover={})]
    for where, address in (("c2", "10.0.0.2"), ("c3", "10.0.0.3")):
        bp = snapshot(docs, {HTTPBIN: frozenset({where})})
        entry = next(o for o in mbcompile.objects(bp)["c1"] if o["kind"] == "ServiceEntry"
                     and o["spec"]["hosts"] == ["httpbin.bar.mesh.internal"])
        assert [e["address"] for e in entry["spec"]["endpoints"]] == [address]
        exported = {o["kind"] for o in mbcompile.objects(bp)[where] if o["kind"] == "Gateway"}
        assert exported == {"Gateway"}


def test_a_declared_split_keeps_its_clusters_and_reports_the_difference() -> None:
    docs = [*mesh_docs(), intent(protocol="HTTP", loadBalancing={"weights": {"c1": 50, "c2": 50}})]
    bp = snapshot(docs, {HTTPBIN: frozenset({"c2", "c3"})})
    # c1 keeps its share though nothing runs there; c3 runs, unweighted: no traffic
    assert bp.snapshot.placement[HTTPBIN] == ("c1", "c2", "c3")
    found = {(u.cluster, u.message.split(",")[0]) for u in coverage(bp.snapshot)}
    assert found == {
        ("c1", "not found running"),
        ("c3", "found running"),
    }
    reported = [str(u) for u in coverage(bp.snapshot)]
    assert "App bar/httpbin in cluster 'c1' (InboundIntent httpbin): not found running, but " \
           "loadBalancing.weights give it 50%: it keeps its share, and that share of requests " \
           "fails" in reported


def test_a_placement_the_split_covers_is_no_problem() -> None:
    docs = [*mesh_docs(), intent(protocol="HTTP", failover={"priority": ["c2", "c1"]})]
    assert coverage(snapshot(docs, {HTTPBIN: frozenset({"c1", "c2"})}).snapshot) == []
    late = coverage(snapshot(docs, {HTTPBIN: frozenset({"c1", "c2", "c3"})}).snapshot)
    assert [(u.cluster, u.message) for u in late] == [
        ("c3", "found running, but not in failover.priority: tried last")]


def test_what_to_look_for_in_each_cluster() -> None:
    docs = [*mesh_docs(clusterSelector={"matchLabels": {"tier": "gold"}}),
            intent(), intent("second", serviceName="httpbin-admin", port=9000),
            doc("App", "curl", {"discover": {}}, "foo")]
    looked = wanted(snapshot(docs, {}).snapshot)
    assert {c: [(w.app, w.services) for w in ws] for c, ws in looked.items()} == {
        "c1": [(("bar", "httpbin"), ("httpbin", "httpbin-admin")), (("foo", "curl"), ())],
        "c2": [(("bar", "httpbin"), ("httpbin", "httpbin-admin")), (("foo", "curl"), ())],
        "c3": [(("foo", "curl"), ())],
    }
