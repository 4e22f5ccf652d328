"""POST /api/v1/apply: many documents, all or none; malformed and oversized bodies."""

from __future__ import annotations

import json

import yaml
from apitest import Api
from intents import doc, example_docs, example_yaml


def _names(api: Api, plural: str) -> list[str]:
    return sorted(i["metadata"]["name"] for i in api.get(f"/api/v1/{plural}").json()["items"])


def test_apply_yaml_then_again_is_unchanged(api: Api) -> None:
    first = api.apply(example_yaml("helloworld-lb"))
    assert first.status_code == 200, first.text
    actions = {i["action"] for i in first.json()["items"]}
    assert actions == {"created"}
    again = api.apply(example_yaml("helloworld-lb")).json()
    assert {i["action"] for i in again["items"]} == {"unchanged"}
    assert again["metadata"]["resourceVersion"] == first.json()["metadata"]["resourceVersion"]


def test_apply_json_array_and_list(api: Api) -> None:
    docs = example_docs("sleep-httpbin")
    r = api.apply(json.dumps(docs), ctype="application/json")
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == len(docs)
    as_list = {"apiVersion": "v1", "kind": "List", "items": docs}
    r = api.apply(json.dumps(as_list), ctype="application/json")
    assert {i["action"] for i in r.json()["items"]} == {"unchanged"}


def test_one_bad_document_stores_nothing(api: Api) -> None:
    docs = example_docs("sleep-httpbin")
    docs.append(doc("App", "Bad_Name", {"clusters": ["cluster1"]}, "foo"))
    r = api.apply(yaml.safe_dump_all(docs))
    assert r.status_code == 422
    (err,) = r.json()["errors"]
    assert err["document"].startswith(f"<body>#{len(docs)} App/Bad_Name")
    assert err["path"] == "metadata.name"
    assert _names(api, "apps") == []


def test_the_whole_resulting_set_must_be_valid(api: Api) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    orphan = doc("InboundIntent", "x", {"app": "nobody", "port": 81}, "foo")
    r = api.apply(yaml.safe_dump(orphan))
    assert r.status_code == 422
    assert "nobody" in r.json()["errors"][0]["message"]
    assert api.get("/api/v1/namespaces/foo/inboundintents/x").status_code == 404


def test_prune_deletes_what_is_not_given(api: Api) -> None:
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    mesh_only = [d for d in example_docs("sleep-httpbin") if d["kind"] in ("Mesh", "Cluster")]
    r = api.apply(yaml.safe_dump_all(mesh_only), params={"prune": "true"})
    assert r.status_code == 200, r.text
    assert {i["action"] for i in r.json()["items"]} == {"unchanged", "deleted"}
    assert _names(api, "apps") == [] and _names(api, "clusters") == ["cluster1", "cluster2"]


def test_duplicates_and_stale_versions_in_a_body(api: Api) -> None:
    cluster = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"}})
    r = api.apply(yaml.safe_dump_all([cluster, cluster]))
    assert r.status_code == 422 and "twice" in r.json()["errors"][0]["message"]
    stored = api.apply(yaml.safe_dump(cluster)).json()
    version = stored["items"][0]["resourceVersion"]
    edited = {**cluster, "metadata": {"name": "east", "resourceVersion": "0"}}
    assert api.apply(yaml.safe_dump(edited)).status_code == 409
    edited["metadata"]["resourceVersion"] = version
    edited["spec"] = {"gateway": {"address": "10.0.0.9"}}
    assert api.apply(yaml.safe_dump(edited)).status_code == 200


def test_malformed_bodies_are_400_with_a_message(api: Api) -> None:
    for text, ctype in (("a: [1, 2", "application/yaml"), ("{nope", "application/json"),
                        ("a: 1\na: 2\n", "application/yaml"), ("", "application/yaml")):
        r = api.apply(text, ctype=ctype)
        assert r.status_code == 400, (text, r.text)
        assert r.json()["errors"][0]["message"]
    latin1 = api.http.post("/api/v1/apply", content=b"a: \xff\n",
                           headers={**api.as_("editor"), "Content-Type": "application/yaml"})
    assert latin1.status_code == 400 and "UTF-8" in latin1.json()["errors"][0]["message"]
    not_a_mapping = api.apply("- 1\n- 2\n", ctype="application/yaml")
    assert not_a_mapping.status_code == 422


def test_oversized_bodies_are_413(api: Api) -> None:
    big = "# " + "x" * (8 * 1024 * 1024) + "\n"
    r = api.apply(big)
    assert r.status_code == 413
    assert "larger than" in r.json()["errors"][0]["message"]

    def chunks():
        for _ in range(9):
            yield b"#" * (1024 * 1024) + b"\n"

    streamed = api.http.post("/api/v1/apply", content=chunks(),
                             headers={**api.as_("editor"), "Content-Type": "application/yaml"})
    assert streamed.status_code == 413


def test_an_address_already_another_hosts_vip_is_422_and_nothing_moves(api: Api, store) -> None:
    """The server plans like the CLI: an ExternalService address that is already the VIP of
    another host in that cluster is refused (PUT and apply alike), nothing stored, no VIP moved."""
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    vips = store.vip_records()
    (held,) = [r.address for r in vips
               if r.active and (r.cluster, r.key) == ("cluster1", "httpbin.bar.cluster2")]
    pinned = doc("ExternalService", "pinned",
                 {"hosts": ["legacy.example"], "addresses": [held],
                  "ports": [{"number": 3306, "name": "mysql"}],
                  "endpoints": [{"address": "172.16.0.8"}], "clusters": ["cluster1"]}, "foo")
    put = api.put("/api/v1/namespaces/foo/externalservices/pinned", pinned)
    applied = api.apply(yaml.safe_dump_all([pinned]))
    for r in (put, applied):
        assert r.status_code == 422, r.text
        (err,) = r.json()["errors"]
        assert err["document"].startswith("<body>#1 ExternalService/pinned")
        assert err["path"] == "spec.addresses[0]"
        assert (f"address {held} is already the VIP of host httpbin.bar.cluster2 in cluster "
                "'cluster1'") in err["message"]
    assert api.get("/api/v1/namespaces/foo/externalservices/pinned").status_code == 404
    assert store.vip_records() == vips


def test_dry_run_answers_what_would_be_done_and_stores_nothing(api: Api, store) -> None:
    before = api.get("/api/v1/apps").json()["metadata"]["resourceVersion"]
    audit = api.get("/api/v1/audit").json()["items"]
    r = api.apply(example_yaml("sleep-httpbin"), params={"dryRun": "All"})
    assert r.status_code == 200, r.text
    assert {i["action"] for i in r.json()["items"]} == {"created"}
    assert _names(api, "apps") == []
    assert api.get("/api/v1/apps").json()["metadata"]["resourceVersion"] == before
    assert api.get("/api/v1/audit").json()["items"] == audit
    with store.reading():
        assert store.vip_records() == []
    # invalid documents are still refused, and a real apply afterwards works as usual
    orphan = doc("InboundIntent", "x", {"app": "nobody", "port": 81}, "foo")
    assert api.apply(yaml.safe_dump(orphan), params={"dryRun": "All"}).status_code == 422
    assert api.apply(example_yaml("sleep-httpbin")).status_code == 200
    assert _names(api, "apps") == ["httpbin", "sleep"]
    assert api.apply(example_yaml("sleep-httpbin"), params={"dryRun": "Some"}).status_code == 422
