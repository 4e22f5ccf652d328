"""Where a cluster stands, judged from istiod's real answers (tests/fixtures/istiod, captured
from the pinned istiod by scripts/capture-istiod-answers) against an apply's record: applied,
observed, delivered, or a NACK, a disconnected proxy, istiod unreachable. Readings that differ
from a capture (a replica more, a proxy left out) are built from captured ones, never written
by hand."""

from __future__ import annotations

import dataclasses

import msgspec
from istiodanswers import applied, reading, replica

from meshbridge.kube import Change
from meshbridge.kube.istiod import ClusterReading
from meshbridge.usecases.propagation import change_id, for_intent, judge, witness

SE = "ServiceEntry/foo/httpbin.bar.cluster2"


def test_istiod_holding_what_was_applied_with_every_proxy_acked_is_delivered() -> None:
    view = judge(applied("synced", "cluster1"), reading("synced", "cluster1"))
    assert (view.state, view.reason) == ("delivered", "")
    assert (view.objects, view.observed, view.proxies, view.acked) == (2, 2, 2, 2)
    assert view.nacks == view.pending == view.disconnected == []


def test_an_object_istiod_holds_at_another_resource_version_is_only_applied() -> None:
    record = applied("synced", "cluster1")
    for o in record["objects"]:
        if o["object"] == SE:
            o["resourceVersion"] = "999999"
    view = judge(record, reading("synced", "cluster1"))
    assert view.state == "applied"
    [line] = view.missing
    assert line.startswith(f"{SE}: istiod istiod-cluster1 holds resourceVersion ")
    assert line.endswith("the apply wrote 999999")
    assert view.observed == 1
    assert SE in view.reason


def test_a_pruned_object_istiod_still_holds_is_not_observed() -> None:
    record = applied("synced", "cluster1")
    record["objects"] = [o for o in record["objects"] if o["object"] != SE]
    record["pruned"] = [SE]
    view = judge(record, reading("synced", "cluster1"))
    assert view.state == "applied"
    assert view.missing == [f"{SE}: pruned, still in istiod istiod-cluster1"]


def test_objects_istiod_does_not_read_are_not_waited_for() -> None:
    record = applied("synced", "cluster1")
    record["objects"].append({"object": "Secret/istio-system/cacerts", "state": "Applied",
                              "resourceVersion": "7"})
    assert judge(record, reading("synced", "cluster1")).state == "delivered"


def test_a_nack_names_the_proxy_the_type_and_envoys_message_and_counts_the_others() -> None:
    view = judge(applied("nack", "cluster1"), reading("nack", "cluster1"))
    assert view.state == "nack"
    [nack] = view.nacks
    assert (nack.proxy, nack.type) == ("sleep-lab.foo", "Cluster")
    assert "value must be less than or equal to 65535" in nack.error
    assert (view.proxies, view.acked) == (2, 1)
    assert "sleep-lab.foo rejected Cluster" in view.reason
    assert view.reason.endswith("value must be less than or equal to 65535)")


def test_a_proxy_gone_since_the_change_keeps_the_cluster_from_delivered() -> None:
    expected = frozenset({"httpbin-lab.bar", "istio-ingressgateway.istio-system"})
    view = judge(applied("disconnected", "cluster2"), reading("disconnected", "cluster2"),
                 expected=expected)
    assert view.state == "observed"
    assert view.disconnected == ["httpbin-lab.bar"]
    assert "disconnected since the change: httpbin-lab.bar" in view.reason
    assert (view.proxies, view.acked) == (1, 1)


def test_something_sent_and_not_acked_yet_is_pending() -> None:
    nacked = replica("nack", "cluster1")
    # the NACK's message taken away: the Cluster type is then sent and not ACKed yet
    proxies = [msgspec.structs.replace(p, resources={
        k: msgspec.structs.replace(v, lastError="") for k, v in p.resources.items()})
        for p in nacked.proxies]
    view = judge(applied("nack", "cluster1"),
                 reading("nack", "cluster1", dataclasses.replace(nacked, proxies=proxies)))
    assert view.state == "observed"
    assert [(p.proxy, p.type, p.why) for p in view.pending] == [
        ("sleep-lab.foo", "Cluster", "sent, not ACKed yet")]


def test_every_replica_must_hold_the_objects_and_every_replicas_proxies_count() -> None:
    # two istiods: cluster1's and, as a second replica, cluster2's (which holds other objects)
    two = reading("synced", "cluster1", replica("synced", "cluster1", "istiod-a"),
                  replica("synced", "cluster2", "istiod-b"))
    view = judge(applied("synced", "cluster1"), two)
    assert view.state == "applied"
    assert all("not in istiod istiod-b yet" in line for line in view.missing)
    # the gateway is connected to both for a moment: counted once
    assert view.proxies == 3
    assert [(i.pod, i.proxies) for i in view.istiod] == [("istiod-a", 2), ("istiod-b", 2)]


def test_istiod_that_cannot_be_read_is_never_delivered() -> None:
    record = applied("synced", "cluster1")
    down = ClusterReading("cluster1", "read", [
        replica("synced", "cluster1", "istiod-a"),
        dataclasses.replace(replica("synced", "cluster1", "istiod-b"), config={}, proxies=[],
                            error="error forwarding port 15014: connection refused")])
    view = judge(record, down)
    assert view.state == "istiod-unreachable"
    assert "istiod istiod-b: error forwarding port 15014: connection refused" in view.reason
    none = judge(record, ClusterReading("cluster1", "no-istiod",
                                        error="no istiod in this cluster"))
    assert (none.state, none.reason) == ("istiod-unreachable",
                                         "istiod cannot be read: no istiod in this cluster")
    gone = judge(record, ClusterReading("cluster1", "unreachable", error="connection refused"))
    assert gone.state == "unreachable"
    assert judge({**record, "state": "Unreachable", "error": "timeout"},
                 reading("synced", "cluster1")).state == "unreachable"


def test_a_witnessed_change_needs_a_push_made_after_it_in_the_namespaces_it_touched() -> None:
    record = applied("synced", "cluster1")
    before = reading("synced", "cluster1")
    touched = [Change("update", "ServiceEntry", "istio-system", "x")]
    seen = witness(before, touched)
    assert seen.concerned == frozenset({"istio-system"})
    # nothing pushed since: the gateway (istio-system) has not got it; sleep (foo) needs nothing
    view = judge(record, before, seen=seen)
    assert view.state == "observed"
    assert [(p.proxy, p.why) for p in view.pending] == [
        ("istio-ingressgateway.istio-system", "istiod has not pushed the change to it yet")]
    # the capture taken after a later push (the broken EnvoyFilter's): the gateway ACKed it
    after = replica("nack", "cluster1")
    gateway_only = dataclasses.replace(after, proxies=[
        p for p in after.proxies if p.proxy == "istio-ingressgateway.istio-system"])
    later = judge(applied("nack", "cluster1"), reading("nack", "cluster1", gateway_only),
                  seen=seen)
    assert later.state == "delivered"
    # a write that touched no namespace with proxies waits for no push
    assert judge(record, before, seen=witness(before, [])).state == "delivered"


def test_an_apply_that_changed_nothing_keeps_the_change_id() -> None:
    record = applied("synced", "cluster1")
    assert change_id(record) == change_id({**record, "time": "later"})
    moved = {**record, "objects": [{**o, "resourceVersion": "1"} for o in record["objects"]]}
    assert change_id(moved) != change_id(record)
    assert change_id({**record, "pruned": [SE]}) != change_id(record)


def test_an_intent_is_found_in_every_cluster_its_objects_live_in() -> None:
    statuses = [applied("synced", "cluster1"), applied("synced", "cluster2")]
    views = {"cluster1": judge(statuses[0], reading("synced", "cluster1"))}
    found = for_intent("inboundintent/bar/httpbin", statuses, views)
    assert [c.cluster for c in found.clusters] == ["cluster1", "cluster2"]
    one, two = found.clusters
    assert one.state == "delivered" and all(o.observed for o in one.objects)
    assert two.state is None and all(o.observed is None for o in two.objects)
    assert for_intent("InboundIntent/bar/other", statuses, views).clusters == []
