"""The audit log of every change, and the Prometheus metrics."""

from __future__ import annotations

from apitest import Api
from intents import doc, example_yaml


def test_every_change_is_audited(api: Api) -> None:
    cluster = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"}})
    v1 = api.put("/api/v1/clusters/east", cluster).json()["metadata"]["resourceVersion"]
    cluster["spec"]["gateway"]["address"] = "10.0.0.2"
    v2 = api.put("/api/v1/clusters/east", cluster).json()["metadata"]["resourceVersion"]
    api.put("/api/v1/clusters/east", cluster)  # unchanged: no entry
    assert api.put("/api/v1/clusters/east", cluster, role="viewer").status_code == 403
    api.delete("/api/v1/clusters/east", role="admin")
    items = api.get("/api/v1/audit", params={"kind": "Cluster"}).json()["items"]
    assert [(i["verb"], i["actor"], i["beforeResourceVersion"], i["afterResourceVersion"])
            for i in items] == [
        ("create", "editor-bot", None, v1),
        ("update", "editor-bot", v1, v2),
        ("delete", "admin-bot", v2, None),
    ]
    assert all(i["name"] == "east" and i["time"].endswith("Z") for i in items)


def test_audit_pages_and_filters(api: Api) -> None:
    api.apply(example_yaml("sleep-httpbin"))
    first = api.get("/api/v1/audit", params={"limit": 2}).json()
    assert len(first["items"]) == 2
    rest = api.get("/api/v1/audit", params={"after": first["next"]}).json()["items"]
    ids = [i["id"] for i in first["items"] + rest]
    assert ids == sorted(set(ids))
    mine = api.get("/api/v1/audit", params={"actor": "editor-bot"}).json()["items"]
    assert {i["kind"] for i in mine} == {"Mesh", "Cluster", "App", "InboundIntent"}


def test_metrics(api: Api) -> None:
    api.apply(example_yaml("sleep-httpbin"))
    api.get("/api/v1/clusters/cluster1/manifests", role="editor")
    api.get("/api/v1/namespaces/foo/apps/nope")
    text = api.get("/metrics").text
    assert 'meshbridge_objects{kind="App"} 2.0' in text
    assert 'meshbridge_objects{kind="ExternalService"} 0.0' in text
    assert ('meshbridge_http_requests_total{method="GET",'
            'route="/api/v1/namespaces/{namespace}/apps/{name}",status="404"} 1.0') in text
    assert 'meshbridge_http_requests_total{method="POST",route="/api/v1/apply",status="200"} 1.0' in text
    assert "meshbridge_http_request_duration_seconds_bucket" in text
    assert "meshbridge_render_duration_seconds_count 1.0" in text
