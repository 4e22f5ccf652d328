"""GET /api/v1/clusters/{name}/manifests: the bytes `meshbridge render` writes, kept current."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from apitest import Api
from fastapi.testclient import TestClient
from helpers import EXAMPLES
from intents import doc, example_yaml, server_yaml

from meshbridge.api import create_app
from meshbridge.loading import Source
from meshbridge.output.emitter import dump
from meshbridge.store import open_store
from meshbridge.usecases import render as render_service

EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def _local_render(name: str, tmp_path: Path) -> dict[str, tuple[bytes, bool]]:
    sources = [Source(str(p), p.read_text()) for p in sorted((EXAMPLES / name).glob("*.yaml"))]
    store = open_store(str(tmp_path / f"local-{name}.db"))
    try:
        return render_service.build(render_service.validate(sources), store).files
    finally:
        store.close()


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_same_bytes_as_a_local_render(api: Api, example: str, tmp_path: Path) -> None:
    assert api.apply(server_yaml(example)).status_code == 200
    local = _local_render(example, tmp_path)
    clusters = sorted({path.split("/", 1)[0] for path in local})
    for cluster in clusters:
        expected = [data for path, (data, _) in local.items() if path.startswith(f"{cluster}/")]
        r = api.get(f"/api/v1/clusters/{cluster}/manifests", role="editor",
                    headers={"Accept": "application/yaml"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/yaml")
        assert r.content == b"---\n".join(expected)
        as_json = api.get(f"/api/v1/clusters/{cluster}/manifests", role="editor").json()
        assert (as_json["apiVersion"], as_json["kind"]) == ("v1", "List")
        assert as_json["metadata"]["resourceVersion"] == r.headers["X-Meshbridge-Revision"]
        assert as_json["items"] == [yaml.safe_load(d) for d in expected]
        # what render --server writes: the objects through the render's own emitter
        assert [dump(obj) for obj in as_json["items"]] == expected


def test_a_write_shows_in_the_next_read(api: Api) -> None:
    api.apply(example_yaml("sleep-httpbin"))
    url = "/api/v1/clusters/cluster1/manifests"
    before = api.get(url, role="editor").json()
    etag = api.get(url, role="editor").headers["etag"]
    assert api.get(url, role="editor").headers["etag"] == etag
    ext = doc("ExternalService", "db", {"hosts": ["db.example.com"],
                                        "ports": [{"number": 5432, "name": "pg"}],
                                        "clusters": ["cluster1"]}, "foo")
    assert api.put("/api/v1/namespaces/foo/externalservices/db", ext).status_code == 201
    after = api.get(url, role="editor")
    assert after.headers["etag"] != etag
    names = {(o["kind"], o["metadata"]["name"]) for o in after.json()["items"]}
    assert ("ServiceEntry", "db") in names
    assert len(after.json()["items"]) == len(before["items"]) + 1
    assert api.delete("/api/v1/namespaces/foo/externalservices/db").status_code == 200
    assert api.get(url, role="editor").json()["items"] == before["items"]


def test_unknown_cluster_is_404(api: Api) -> None:
    api.apply(example_yaml("sleep-httpbin"))
    assert api.get("/api/v1/clusters/nowhere/manifests", role="editor").status_code == 404


def test_two_processes_on_one_store_see_each_other(api: Api, db_url: str) -> None:
    """A second app (another server process's view) notices writes through the counters."""
    other_store = open_store(db_url)
    try:
        with TestClient(create_app(other_store), raise_server_exceptions=False) as other:
            headers = api.as_("editor")
            api.apply(example_yaml("sleep-httpbin"))
            url = "/api/v1/clusters/cluster1/manifests"
            first = other.get(url, headers=headers)
            assert first.status_code == 200
            assert first.json() == api.get(url, role="editor").json()
            cluster3 = doc("Cluster", "cluster3", {"gateway": {"address": "10.9.9.9"}})
            assert other.put("/api/v1/clusters/cluster3", json=cluster3, headers=headers).status_code == 201
            assert api.get("/api/v1/clusters/cluster3/manifests", role="editor").status_code == 200
            sleep = api.get("/api/v1/namespaces/foo/apps/sleep").json()
            sleep["spec"]["clusters"] = ["cluster3"]
            assert api.put("/api/v1/namespaces/foo/apps/sleep", sleep).status_code == 200
            moved = other.get("/api/v1/clusters/cluster3/manifests", headers=headers).json()
            assert any(o["kind"] == "ServiceEntry" for o in moved["items"])
            stale = {**sleep, "spec": {"clusters": ["cluster1"]}}
            assert other.put("/api/v1/namespaces/foo/apps/sleep", json=stale,
                             headers=headers).status_code == 409
    finally:
        other_store.close()
