"""The server reconciles what it stores with live clusters in the background, and serves the
result: real API servers (scripts/k8s-testenv), the app in-process with its lifespan running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import EXAMPLES, remove_mesh

from meshbridge.api import create_app
from meshbridge.kube import Options
from meshbridge.service.tokens import create_token
from meshbridge.store import open_store

pytestmark = pytest.mark.k8s


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def test_background_reconcile_applies_changes_and_reports_status(testenv, tmp_path: Path) -> None:
    c1, c2 = testenv.clusters(2)
    docs = [d for p in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    for d in docs:
        if d["kind"] == "Mesh":
            d["metadata"]["name"] = "served"
        if d["kind"] == "Cluster":
            d["spec"]["kubeconfig"] = {"path": str((c1 if d["metadata"]["name"] == "cluster1" else c2).kubeconfig)}
    store = open_store(str(tmp_path / "server.db"))
    token = create_token(store, "ci", "editor")
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(store, reconcile_interval=30, reconcile_options=Options(retries=2))
    path = "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2"
    try:
        with TestClient(app) as http:
            r = http.post("/api/v1/apply", content=yaml.safe_dump_all(docs).encode(),
                          headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == 200, r.text

            def applied() -> dict | None:
                got = http.get("/api/v1/status", headers=headers).json()["items"]
                return got if len(got) == 2 and all(s["state"] == "Applied" for s in got) else None

            states = _wait(applied)
            assert {s["cluster"] for s in states} == {"cluster1", "cluster2"}
            with c1.client() as k:
                assert k.get(path).json()["spec"]["ports"][0]["number"] == 8000
            one = http.get("/api/v1/clusters/cluster1/status", headers=headers).json()
            assert {"object": "ServiceEntry/foo/httpbin.bar.cluster2", "state": "Applied"}.items() <= \
                next(o for o in one["objects"] if o["object"].startswith("ServiceEntry")).items()

            # a change reaches the cluster without anyone calling apply
            intent = next(d for d in docs if d["kind"] == "InboundIntent")
            intent["spec"]["port"] = 9000
            url = "/api/v1/namespaces/bar/inboundintents/httpbin"
            assert http.put(url, json=intent, headers=headers).status_code in (200, 201)

            def moved() -> bool:
                with c1.client() as k:
                    return k.get(path).json()["spec"]["ports"][0]["number"] == 9000

            _wait(moved)
            assert http.post("/api/v1/reconcile", headers=headers).status_code == 202
            assert http.get("/api/v1/clusters/nowhere/status", headers=headers).status_code == 404
    finally:
        remove_mesh((c1, c2), "served")
        store.close()
