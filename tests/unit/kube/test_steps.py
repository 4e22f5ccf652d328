"""The reconciler's steps, a pure function of desired objects, listed live objects and ownership.

What a user would notice if it broke: an apply that deletes or rewrites another mesh's objects
(or someone's own), writes on every run, or a ``diff`` that disagrees with what ``apply`` does.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbridge.compile.envelope import APPLY_ORDER
from meshbridge.kube import kinds
from meshbridge.kube.kinds import CLUSTER_KINDS, PRUNABLE
from meshbridge.kube.steps import (
    HASH_ANNOTATION,
    INJECTION_LABEL,
    MANAGED_BY,
    MESH_ID_LABEL,
    MESH_LABEL,
    Live,
    Ownership,
    Step,
    decide,
    prepare,
)

MINE = Ownership("default", "11111111-1111-4111-8111-111111111111")
OTHER_ID = "22222222-2222-4222-8222-222222222222"
NAMES = ["a", "b", "c"]
NAMESPACES = ["ns1", "ns2", "istio-system"]
VERSIONS = {"Secret": "v1", "IstioOperator": "install.istio.io/v1alpha1"}


def api_version(kind: str) -> str:
    group = CLUSTER_KINDS[kind].group
    return VERSIONS.get(kind, f"{group}/v1beta1" if group else "v1")


def desired_obj(kind: str, ns: str, name: str, value: int) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": api_version(kind),
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
    }
    if kind == "Secret":
        obj["data"] = {"k": f"dmFs{value}"}
    else:
        obj["spec"] = {"host": f"{name}.example", "n": value}
    return obj


def live_of(obj: dict[str, Any], uid: str = "u", version: str = "1") -> Live:
    served = json.loads(json.dumps(obj))
    served["metadata"].update(uid=uid, resourceVersion=version)
    return msgspec.json.decode(json.dumps(served).encode(), type=Live)


# Whose a live object is: labels as this mesh, an older meshbridge, another mesh, another
# meshbridge mesh of the same name, meshbridge's rendered files applied by kubectl, or nobody.
LABELS = {
    "mine": MINE.labels,
    "legacy": {MANAGED_BY[0]: MANAGED_BY[1], MESH_LABEL: "default"},
    "other": {MANAGED_BY[0]: MANAGED_BY[1], MESH_LABEL: "other", MESH_ID_LABEL: OTHER_ID},
    "same-name": {MANAGED_BY[0]: MANAGED_BY[1], MESH_LABEL: "default", MESH_ID_LABEL: OTHER_ID},
    "rendered": {MANAGED_BY[0]: MANAGED_BY[1]},
    "nobody": {},
}


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    keys = st.tuples(st.sampled_from(PRUNABLE), st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
    wanted = draw(st.lists(keys, unique=True, max_size=10))
    desired = [desired_obj(k, ns, n, draw(st.integers(0, 2))) for k, ns, n in wanted]
    live_keys = draw(st.lists(keys, unique=True, max_size=12))
    live: dict[tuple[str, str, str], tuple[str, Live]] = {}
    for i, (kind, ns, name) in enumerate(live_keys):
        whose = draw(st.sampled_from(sorted(LABELS)))
        obj = desired_obj(kind, ns, name, draw(st.integers(0, 2)))
        obj["metadata"]["labels"] = dict(LABELS[whose])
        if whose == "mine" and draw(st.booleans()):  # as meshbridge wrote it, maybe since edited
            obj = prepare(desired_obj(kind, ns, name, draw(st.integers(0, 2))), MINE)
            if draw(st.booleans()):
                obj["spec" if "spec" in obj else "data"]["extra"] = "added by someone"
        live[(kind, ns, name)] = (whose, live_of(obj, uid=f"uid-{i}", version=str(100 + i)))
    unserved = draw(st.sets(st.sampled_from(PRUNABLE), max_size=2))
    listing: dict[str, list[Live] | None] = {
        k: None if k in unserved else [lv for key, (_, lv) in live.items() if key[0] == k]
        for k in PRUNABLE
    }
    return {
        "desired": desired,
        "live": live,
        "listing": listing,
        "namespaces": draw(st.sets(st.sampled_from(NAMESPACES))),
        "adopt": draw(st.booleans()),
        "force": draw(st.booleans()),
    }


def run_plan(c: dict[str, Any]) -> tuple[Ownership, list[Step]]:
    owner = Ownership(MINE.mesh, MINE.uid, adopt_legacy=c["adopt"])
    steps = decide(
        c["desired"], c["listing"], c["namespaces"], owner,
        force_conflicts=c["force"], namespace_labels=dict([INJECTION_LABEL]),
    )
    return owner, steps


WRITES = ("create", "update", "delete")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=clusters())
def test_objects_of_other_meshes_and_unlabelled_ones_are_never_written_or_deleted(c) -> None:
    _, steps = run_plan(c)
    for step in steps:
        if step.action not in WRITES or step.kind == "Namespace":
            continue
        whose = c["live"].get(step.key, ("absent",))[0]
        if step.action == "create":
            assert whose == "absent", step  # (a create never forces: see reconcile)
        elif step.action == "delete":
            assert whose == "mine" or (whose == "legacy" and c["adopt"]), step
        else:
            allowed = {"mine"} | ({"legacy"} if c["adopt"] else set())
            if c["force"]:
                allowed |= {"nobody", "rendered"}  # --force-conflicts, and only that
            assert whose in allowed, step
            assert step.force


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=clusters())
def test_every_desired_object_has_one_step_and_deletes_come_last(c) -> None:
    _, steps = run_plan(c)
    objects = [s for s in steps if s.kind != "Namespace" and s.action != "delete"]
    assert sorted(s.key for s in objects) == sorted(
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in c["desired"]
    )
    order = {k: i for i, k in enumerate(APPLY_ORDER)}
    kinds = [order[s.kind] for s in steps if s.action != "delete"]
    assert kinds == sorted(kinds)
    deletes = [s for s in steps if s.action == "delete"]
    assert steps[len(steps) - len(deletes):] == deletes
    for step in deletes:  # with what the list saw, for the preconditions
        assert step.live is not None and step.live.metadata.uid.startswith("uid-")
    for step in steps:
        if step.kind == "Namespace":
            assert step.name not in c["namespaces"]
            assert step.desired is not None
            assert step.desired["metadata"]["labels"][INJECTION_LABEL[0]] == INJECTION_LABEL[1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=clusters())
def test_after_the_plan_is_carried_out_a_new_plan_changes_nothing(c) -> None:
    """The steps, done as the API server would (forced applies over meshbridge's fields, fields
    of other managers kept), then planned again: nothing left to write, so ``diff`` exits 0
    after an ``apply``; other meshes' objects are as they were."""
    owner, steps = run_plan(c)
    live = {key: lv for key, (_, lv) in c["live"].items()}
    for step in steps:
        if step.action == "delete":
            del live[step.key]
        elif step.action in ("create", "update") and step.kind != "Namespace":
            assert step.desired is not None
            merged = json.loads(json.dumps(step.desired))
            before = live.get(step.key)
            if before is not None:  # fields only another manager set stay
                for key, theirs in before.as_dict().items():
                    if isinstance(theirs, dict) and key != "metadata":
                        merged[key] = {**theirs, **merged.get(key, {})}
                merged["metadata"]["labels"] = {**before.metadata.labels, **merged["metadata"]["labels"]}
            live[step.key] = live_of(merged, uid=f"new-{step.name}")
    listing = {
        k: None if c["listing"][k] is None else [lv for key, lv in live.items() if key[0] == k]
        for k in PRUNABLE
    }
    namespaces = c["namespaces"] | {s.name for s in steps if s.kind == "Namespace"}
    again = decide(c["desired"], listing, namespaces, owner, force_conflicts=c["force"])
    assert [s for s in again if s.action in WRITES] == []
    for key, (whose, before) in c["live"].items():
        if whose in ("other", "same-name"):
            assert live[key] is before


def test_a_field_another_manager_added_is_not_drift() -> None:
    desired = desired_obj("DestinationRule", "ns1", "a", 1)
    applied = prepare(desired, MINE)
    edited = json.loads(json.dumps(applied))
    edited["spec"]["trafficPolicy"] = {"connectionPool": {"tcp": {"maxConnections": 5}}}
    edited["metadata"]["labels"]["team"] = "x"
    listing = {k: [] for k in PRUNABLE} | {"DestinationRule": [live_of(edited)]}
    (step,) = decide([desired], listing, {"ns1"}, MINE)
    assert step.action == "unchanged"
    edited["spec"]["n"] = 2  # a value meshbridge sets
    listing["DestinationRule"] = [live_of(edited)]
    (step,) = decide([desired], listing, {"ns1"}, MINE)
    assert (step.action, step.reason) == ("update", "drift: changed outside meshbridge")
    assert edited["metadata"]["annotations"][HASH_ANNOTATION]


def test_objects_labelled_before_identities_are_adopted_only_where_told() -> None:
    desired = desired_obj("ServiceEntry", "ns1", "a", 1)
    old = prepare(desired, MINE)
    del old["metadata"]["labels"][MESH_ID_LABEL]
    stale = prepare(desired_obj("ServiceEntry", "ns1", "b", 1), MINE)
    del stale["metadata"]["labels"][MESH_ID_LABEL]
    listing = {k: [] for k in PRUNABLE} | {"ServiceEntry": [live_of(old), live_of(stale)]}
    adopting = Ownership(MINE.mesh, MINE.uid, adopt_legacy=True)
    steps = decide([desired], listing, {"ns1"}, adopting)
    assert [(s.action, s.name) for s in steps] == [("update", "a"), ("delete", "b")]
    assert steps[0].desired is not None
    assert steps[0].desired["metadata"]["labels"][MESH_ID_LABEL] == MINE.uid
    steps = decide([desired], listing, {"ns1"}, MINE)
    assert [(s.action, s.name) for s in steps] == [("conflict", "a")]
    assert "as an older meshbridge labelled it" in steps[0].reason


def test_objects_a_store_wrote_before_it_took_over_a_lost_mesh_stay_its_own() -> None:
    """A store that took over a lost store's identity (apply --adopt-mesh-id, or after pki
    import) relabels what it wrote under its own earlier identity; other identities stay out."""
    desired = desired_obj("ServiceEntry", "ns1", "a", 1)
    earlier = Ownership(MINE.mesh, "earlier-id")
    mine_before, theirs = prepare(desired, earlier), prepare(desired_obj("ServiceEntry", "ns1", "b", 1),
                                                             Ownership(MINE.mesh, "someone-else"))
    listing = {k: [] for k in PRUNABLE} | {"ServiceEntry": [live_of(mine_before), live_of(theirs)]}
    took = Ownership(MINE.mesh, MINE.uid, previous=frozenset({"earlier-id"}))
    steps = decide([desired], listing, {"ns1"}, took)
    assert [(s.action, s.name) for s in steps] == [("update", "a")]
    assert steps[0].desired is not None
    assert steps[0].desired["metadata"]["labels"][MESH_ID_LABEL] == MINE.uid
    assert [(s.action, s.name) for s in decide([desired], listing, {"ns1"}, MINE)] == [
        ("conflict", "a")]


def test_the_apply_order_is_the_compilers_and_every_kind_in_it_has_a_resource() -> None:
    assert list(CLUSTER_KINDS) == list(APPLY_ORDER)
    assert set(kinds._TABLE) == set(APPLY_ORDER), "a kind kube knows that is never applied"
    assert [k for k in APPLY_ORDER if k != "Namespace"] == PRUNABLE
