"""GET /api/v1/placements, and a recorded placement as the server's renders see it: a watch's
reading recorded (as server.placements records it) moves the manifests and their ETag, and is
in the audit log; a count changes neither. The watches themselves, against real API servers:
tests/integration/test_server_discovery.py."""

from __future__ import annotations

import json

from apitest import Api
from intents import server_yaml

from meshbridge import compile as mbcompile
from meshbridge.kube.placement import Reading
from meshbridge.loading import Source, load
from meshbridge.store import SqlStore
from meshbridge.usecases import placement

HTTPBIN, SLEEP = ("bar", "httpbin"), ("foo", "sleep")
MANIFESTS = "/api/v1/clusters/cluster1/manifests"


def _record(store: SqlStore, *readings: Reading) -> placement.Decision:
    intents = load([Source("stored", server_yaml("discovered"))])
    return placement.record(store, mbcompile.check(intents), list(readings), "replica-a")


def _hosts(api: Api) -> set[str]:
    items = api.get(MANIFESTS, role="editor").json()["items"]
    return {h for o in items if o["kind"] == "ServiceEntry" for h in o["spec"]["hosts"]}


def test_a_recorded_placement_is_served_rendered_and_audited(api: Api, store: SqlStore) -> None:
    assert api.apply(server_yaml("discovered")).status_code == 200
    empty = api.get("/api/v1/placements").json()
    assert empty["items"] == [] and empty["discovered"] == ["bar/httpbin", "foo/sleep"]
    before = api.get(MANIFESTS, role="editor")
    assert "httpbin.bar.mesh.internal" not in _hosts(api)

    _record(store, Reading("cluster1", {SLEEP: 1}), Reading("cluster2", {HTTPBIN: 2}))
    found = api.get("/api/v1/placements").json()
    assert [(i["app"], i["cluster"], i["ready"], i["gone"]) for i in found["items"]] == [
        ("httpbin", "cluster2", 2, None), ("sleep", "cluster1", 1, None)]
    after = api.get(MANIFESTS, role="editor")
    assert after.headers["etag"] != before.headers["etag"]
    assert "httpbin.bar.mesh.internal" in _hosts(api)  # sleep's route to cluster2
    audit = api.get("/api/v1/audit?kind=Placement").json()["items"]
    assert [(e["verb"], e["namespace"], e["name"], e["actor"]) for e in audit] == [
        ("found", "bar", "httpbin@cluster2", "replica-a"),
        ("found", "foo", "sleep@cluster1", "replica-a")]

    _record(store, Reading("cluster2", {HTTPBIN: 5}))  # a count: not a render input
    assert api.get(MANIFESTS, role="editor").headers["etag"] == after.headers["etag"]


def test_placements_need_a_token(api: Api) -> None:
    api.apply(server_yaml("discovered"))
    assert api.get("/api/v1/placements", role=None).status_code == 401
    assert api.get("/api/v1/placements", role="viewer").status_code == 200


def test_discover_and_status_against_a_server(live, db_url: str, monkeypatch) -> None:
    from typer.testing import CliRunner

    from meshbridge.cli import app
    from meshbridge.server.tokens import create_token
    from meshbridge.store import open_store

    # no reconciler: its watches would find no credential for these clusters and say so (exit
    # 1), racing the placements this test records itself
    server = live(None, "--no-pki", "--reconcile-interval", "0")
    store = open_store(db_url)
    try:
        token = create_token(store, "cli-user", "editor")
        monkeypatch.setenv("MESHBRIDGE_SERVER", server.url)
        monkeypatch.setenv("MESHBRIDGE_TOKEN", token)
        stored = CliRunner().invoke(app, ["apply", "-f", "-"], input=server_yaml("discovered"))
        assert stored.exit_code == 0, stored.stderr
        _record(store, Reading("cluster2", {HTTPBIN: 2}))
    finally:
        store.close()
    found = CliRunner().invoke(app, ["discover", "--server", server.url, "-o", "json"])
    assert found.exit_code == 0, found.stderr
    assert json.loads(found.stdout) == [
        {"app": "httpbin", "namespace": "bar", "cluster": "cluster2", "ready": 2}]
    status = CliRunner().invoke(app, ["status", "--server", server.url])
    assert "httpbin.bar" in status.stdout and "found in no cluster" in status.stdout
