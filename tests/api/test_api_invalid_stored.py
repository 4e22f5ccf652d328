"""A stored document that is no longer valid (a stricter model after an upgrade, an edit behind
the API's back) is flagged and left out of renders; everything else keeps working, and it can be
listed, replaced and deleted through the API."""

from __future__ import annotations

import json

from apitest import Api
from intents import example_docs, example_yaml

from meshbridge.store import SqlStore

SLEEP = "/api/v1/namespaces/foo/apps/sleep"


def _spoil(store: SqlStore, kind: str, namespace: str, name: str, change) -> None:
    """Rewrite a stored body behind the API, as an upgrade's stricter model would see it."""
    with store.transaction():
        store.lock_writes()
        row = store.get_resource(kind, namespace, name)
        assert row is not None
        body = json.loads(row.body)
        change(body)
        version = store.bump_resources()
        store.put_resources([row.__class__(row.kind, row.namespace, row.name, row.uid, version,
                                           row.created, json.dumps(body))])


def _bogus(body: dict) -> None:
    body["spec"]["replicaz"] = 3  # an unknown field: the model refuses it


def test_an_invalid_stored_document_is_flagged_and_can_be_replaced(api: Api, store: SqlStore) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    before = api.get("/api/v1/clusters/cluster2/manifests", role="editor").json()["items"]
    _spoil(store, "App", "foo", "sleep", _bogus)

    # reported: the App itself, and the intent that names it as a client
    found = api.get("/api/v1/problems").json()
    flagged = {(i["kind"], i["name"]): i for i in found["items"]}
    assert set(flagged) == {("App", "sleep"), ("InboundIntent", "httpbin")}
    assert flagged[("App", "sleep")]["reason"] == "invalid"
    assert flagged[("App", "sleep")]["path"] == SLEEP
    assert any("replicaz" in p["path"] or "replicaz" in p["message"]
               for p in flagged[("App", "sleep")]["problems"])
    assert flagged[("InboundIntent", "httpbin")]["reason"] == "excluded"
    assert found["set"] == []

    # listed and read as stored
    apps = api.get("/api/v1/namespaces/foo/apps").json()["items"]
    assert [a["metadata"]["name"] for a in apps] == ["sleep"]
    assert api.get(SLEEP).json()["spec"]["replicaz"] == 3

    # other documents keep working: reads of manifests (without what was left out), writes
    r = api.get("/api/v1/clusters/cluster2/manifests", role="editor")
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) < len(before)
    c1 = next(d for d in example_docs("sleep-httpbin") if d["metadata"]["name"] == "cluster1")
    c1 = {**c1, "metadata": {**c1["metadata"], "labels": {"zone": "a"}}}
    assert api.put("/api/v1/clusters/cluster1", c1).status_code == 200
    # ...but a write may not flag one more: deleting what others need is still refused
    assert api.delete("/api/v1/clusters/cluster2").status_code == 409  # App httpbin is there

    # replaced (with a precondition on the flagged version): back in the set, renders as before
    spoiled = api.get(SLEEP).json()
    fixed = {**spoiled, "spec": {"clusters": ["cluster1"]}}
    stale = {**fixed, "metadata": {**fixed["metadata"], "resourceVersion": "1"}}
    assert api.put(SLEEP, stale).status_code == 409
    r = api.put(SLEEP, fixed)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["uid"] == spoiled["metadata"]["uid"]
    assert api.get("/api/v1/problems").json()["items"] == []
    assert api.get("/api/v1/clusters/cluster2/manifests", role="editor").json()["items"] == before
    audit = api.get("/api/v1/audit", params={"kind": "App"}).json()["items"]
    assert audit[-1]["verb"] == "update" and audit[-1]["name"] == "sleep"


def test_an_invalid_stored_document_can_be_deleted(api: Api, store: SqlStore) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    _spoil(store, "App", "bar", "httpbin", _bogus)
    flagged = api.get("/api/v1/problems").json()["items"]
    assert {(i["kind"], i["name"], i["reason"]) for i in flagged} == {
        ("App", "httpbin", "invalid"), ("InboundIntent", "httpbin", "excluded")}
    # the intent that needs it goes first, then the App itself
    assert api.delete("/api/v1/namespaces/bar/inboundintents/httpbin").status_code == 200
    r = api.delete("/api/v1/namespaces/bar/apps/httpbin")
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["name"] == "httpbin"
    assert api.get("/api/v1/namespaces/bar/apps/httpbin").status_code == 404
    assert api.get("/api/v1/problems").json()["items"] == []
    assert api.get("/api/v1/clusters/cluster1/manifests", role="editor").status_code == 200


def test_apply_with_prune_replaces_a_set_with_invalid_documents(api: Api, store: SqlStore) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    _spoil(store, "Mesh", "", "default", lambda b: b["spec"].update(vipPool="not-a-network"))
    # nothing can be rendered without a Mesh: the problem is reported, writes still work
    found = api.get("/api/v1/problems").json()
    assert [i["kind"] for i in found["items"] if i["reason"] == "invalid"] == ["Mesh"]
    r = api.apply(example_yaml("helloworld-lb"), params={"prune": "true"})
    assert r.status_code == 200, r.text
    assert api.get("/api/v1/problems").json() == {"items": [], "set": []}
    assert api.get("/api/v1/clusters/cluster1/manifests", role="editor").status_code == 200
