"""Documents as REST resources: create, read, list, replace, delete, server-set fields."""

from __future__ import annotations

import pytest
from apitest import Api
from intents import API, doc, example_yaml

CLUSTER = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"}}, labels={"zone": "a"})
CASES = [
    ("/api/v1/meshes/default", doc("Mesh", "default", {"vipPool": "240.1.0.0/16"})),
    ("/api/v1/clusters/east", CLUSTER),
]


@pytest.mark.parametrize(("url", "body"), CASES)
def test_put_creates_then_replaces_with_server_fields(api: Api, url: str, body: dict) -> None:
    created = api.put(url, body)
    assert created.status_code == 201, created.text
    meta = created.json()["metadata"]
    assert {"uid", "resourceVersion", "creationTimestamp"} <= set(meta)
    again = api.put(url, {**body, "metadata": {**body["metadata"], "labels": {"x": "y"}}})
    assert again.status_code == 200
    meta2 = again.json()["metadata"]
    assert meta2["uid"] == meta["uid"] and meta2["creationTimestamp"] == meta["creationTimestamp"]
    assert int(meta2["resourceVersion"]) > int(meta["resourceVersion"])
    got = api.get(url).json()
    assert got == again.json()
    assert got["metadata"]["labels"] == {"x": "y"}


def test_namespaced_kinds_and_cross_namespace_lists(api: Api) -> None:
    assert api.put("/api/v1/clusters/east", CLUSTER).status_code == 201
    for ns in ("foo", "bar"):
        app = doc("App", "web", {"clusters": ["east"]}, ns, labels={"team": ns})
        assert api.put(f"/api/v1/namespaces/{ns}/apps/web", app).status_code == 201
    ext = doc("ExternalService", "db", {"hosts": ["db.example.com"],
                                        "ports": [{"number": 5432, "name": "pg"}]}, "foo")
    assert api.put("/api/v1/namespaces/foo/externalservices/db", ext).status_code == 201
    intent = doc("InboundIntent", "web", {"app": "web", "port": 80}, "foo")
    assert api.put("/api/v1/namespaces/foo/inboundintents/web", intent).status_code == 201

    every = api.get("/api/v1/apps").json()
    assert every["kind"] == "AppList" and every["apiVersion"] == API
    assert sorted(i["metadata"]["namespace"] for i in every["items"]) == ["bar", "foo"]
    in_foo = api.get("/api/v1/namespaces/foo/apps").json()["items"]
    assert [i["metadata"]["namespace"] for i in in_foo] == ["foo"]
    assert len(api.get("/api/v1/inboundintents").json()["items"]) == 1
    assert len(api.get("/api/v1/externalservices").json()["items"]) == 1
    assert api.get("/api/v1/namespaces/bar/apps/web").json()["metadata"]["labels"] == {"team": "bar"}


def test_label_selectors(api: Api) -> None:
    for name, zone in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        body = doc("Cluster", name, {"gateway": {"address": "10.0.0.1"}},
                   labels={"zone": zone, "tier": "gold" if name == "a1" else "std"})
        api.put(f"/api/v1/clusters/{name}", body)

    def names(sel: str) -> list[str]:
        r = api.get("/api/v1/clusters", params={"labelSelector": sel})
        assert r.status_code == 200, r.text
        return [i["metadata"]["name"] for i in r.json()["items"]]

    assert names("zone=a") == ["a1", "a2"]
    assert names("zone=a,tier=gold") == ["a1"]
    assert names("zone!=a") == ["b1"]
    assert names("tier") == ["a1", "a2", "b1"]
    assert names("!nothing,zone==b") == ["b1"]
    bad = api.get("/api/v1/clusters", params={"labelSelector": "zone=a=b"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"]


def test_body_must_match_the_url(api: Api) -> None:
    api.put("/api/v1/clusters/east", CLUSTER)
    body = doc("App", "web", {"clusters": ["east"]}, "foo")
    wrong_name = api.put("/api/v1/namespaces/foo/apps/other", body)
    assert wrong_name.status_code == 422
    assert wrong_name.json()["errors"][0]["path"] == "metadata.name"
    wrong_ns = api.put("/api/v1/namespaces/bar/apps/web", body)
    assert wrong_ns.status_code == 422
    assert wrong_ns.json()["errors"][0]["path"] == "metadata.namespace"
    wrong_kind = api.put("/api/v1/clusters/web", body)
    assert wrong_kind.status_code == 422
    assert api.get("/api/v1/apps").json()["items"] == []
    # a namespaced document without a namespace takes the URL's
    bare = doc("App", "web", {"clusters": ["east"]})
    assert api.put("/api/v1/namespaces/foo/apps/web", bare).status_code == 201


def test_invalid_documents_get_located_problems_and_nothing_is_stored(api: Api) -> None:
    body = doc("Cluster", "east", {"gateway": {"adress": "10.0.0.1"}})
    r = api.put("/api/v1/clusters/east", body)
    assert r.status_code == 422
    (err,) = r.json()["errors"]
    assert err["path"] == "spec.gateway.adress" and "did you mean 'address'" in err["message"]
    assert err["document"].startswith("<body>#1 Cluster/east")
    assert api.get("/api/v1/clusters/east").status_code == 404


def test_cross_document_rules_apply_to_a_single_put(api: Api) -> None:
    intent = doc("InboundIntent", "web", {"app": "missing", "port": 80}, "foo")
    r = api.put("/api/v1/namespaces/foo/inboundintents/web", intent)
    assert r.status_code == 422
    assert any("missing" in e["message"] for e in r.json()["errors"])


def test_stale_resource_version_is_a_conflict(api: Api) -> None:
    first = api.put("/api/v1/clusters/east", CLUSTER).json()
    version = first["metadata"]["resourceVersion"]
    ok = api.put("/api/v1/clusters/east", {**first, "spec": {"gateway": {"address": "10.0.0.2"}}})
    assert ok.status_code == 200
    stale = api.put("/api/v1/clusters/east", {**first, "spec": {"gateway": {"address": "10.0.0.3"}}})
    assert stale.status_code == 409
    assert version in stale.json()["errors"][0]["message"]
    assert api.get("/api/v1/clusters/east").json()["spec"]["gateway"]["address"] == "10.0.0.2"
    gone = {**first, "metadata": {**first["metadata"], "name": "west"}}
    assert api.put("/api/v1/clusters/west", gone).status_code == 409


def test_unchanged_put_keeps_the_version(api: Api) -> None:
    first = api.put("/api/v1/clusters/east", CLUSTER).json()
    again = api.put("/api/v1/clusters/east", CLUSTER)
    assert again.status_code == 200
    assert again.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_delete_and_its_preconditions(api: Api) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    refused = api.delete("/api/v1/namespaces/bar/apps/httpbin")
    assert refused.status_code == 409
    errors = refused.json()["errors"]
    assert any(e["document"].startswith("/api/v1/namespaces/bar/inboundintents/httpbin") for e in errors)
    assert api.get("/api/v1/namespaces/bar/apps/httpbin").status_code == 200

    intent = api.get("/api/v1/namespaces/bar/inboundintents/httpbin").json()
    stale = api.delete("/api/v1/namespaces/bar/inboundintents/httpbin",
                       params={"resourceVersion": "999999"})
    assert stale.status_code == 409
    gone = api.delete("/api/v1/namespaces/bar/inboundintents/httpbin",
                      params={"resourceVersion": intent["metadata"]["resourceVersion"]})
    assert gone.status_code == 200 and gone.json()["metadata"]["name"] == "httpbin"
    assert api.delete("/api/v1/namespaces/bar/apps/httpbin").status_code == 200
    assert api.get("/api/v1/namespaces/bar/apps/httpbin").status_code == 404
    assert api.delete("/api/v1/namespaces/bar/apps/httpbin").status_code == 404


def test_unknown_objects_are_404(api: Api) -> None:
    assert api.get("/api/v1/clusters/nope").status_code == 404
    assert api.get("/api/v1/namespaces/x/apps/nope").json()["errors"][0]["message"]
    assert api.get("/api/v1/nothing").status_code == 404
