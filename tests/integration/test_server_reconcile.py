"""The server reconciles what it stores with live clusters in the background, and serves the
result: real API servers (scripts/k8s-testenv), the app in-process with its lifespan running."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import EXAMPLES, remove_mesh, wait_for, with_server_credentials
from pgcluster import free_port
from tlsfiles import make_tls_files
from typer.testing import CliRunner

from meshbridge.api import create_app
from meshbridge.kube import ReconcileOptions
from meshbridge.server.credentials import Credentials
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store
from meshbridge.usecases.statekey import load_sealer

pytestmark = pytest.mark.k8s


def _wait(predicate, timeout: float = 60.0):
    return wait_for(predicate, "the condition", timeout)


def test_background_reconcile_applies_changes_and_reports_status(testenv, tmp_path: Path) -> None:
    c1, c2 = testenv.clusters(2)
    docs = [d for p in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    for d in docs:
        if d["kind"] == "Mesh":
            d["metadata"]["name"] = "served"
        if d["kind"] == "Cluster":
            d["spec"]["kubeconfig"] = {"path": str((c1 if d["metadata"]["name"] == "cluster1" else c2).kubeconfig)}
    db = str(tmp_path / "server.db")
    store = open_store(db)
    token = create_token(store, "ci", "editor")
    headers = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {create_token(store, 'root', 'admin')}"}
    app = create_app(store, reconcile_interval=30, reconcile_options=ReconcileOptions(retries=2),
                     credentials=Credentials(store, lambda: load_sealer(db, store)))
    path = "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/httpbin.bar.cluster2"
    try:
        with TestClient(app) as http:
            # an admin registers each cluster's kubeconfig; the Clusters name them
            docs = with_server_credentials(http, admin, docs)
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


def test_a_served_mesh_over_tls_reaches_clusters_with_credentials_an_admin_registered(
    testenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end, as a team runs it: `meshbridge serve` over TLS; an admin registers each
    cluster's kubeconfig with `meshbridge credential add`; an editor applies Clusters that name
    them; the server's reconciler reaches the real API servers with them."""
    from meshbridge.cli import app as cli_app

    c1, c2 = testenv.clusters(2)
    tls = make_tls_files(tmp_path / "tls")
    db = tmp_path / "served.db"
    store = open_store(str(db))
    editor, admin = (create_token(store, n, n) for n in ("editor", "admin"))
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MESHBRIDGE_STATE_KEY"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "meshbridge.cli.server", "serve", "--db", f"sqlite:///{db}",
         "--host", "127.0.0.1", "--port", str(port), "--no-pki", "--reconcile-interval", "30",
         "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(tls.ca))
    monkeypatch.setenv("MESHBRIDGE_SERVER", url)
    monkeypatch.setenv("MESHBRIDGE_SERVER_CA", str(tls.ca))

    def cli(token: str, *args: str):
        monkeypatch.setenv("MESHBRIDGE_TOKEN", token)
        return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)

    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"{url}/readyz", verify=verify, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, 30)
        for name, cluster in (("east", c1), ("west", c2)):
            added = cli(admin, "credential", "add", name, "--kubeconfig", str(cluster.kubeconfig))
            assert added.exit_code == 0, added.stderr
        docs = [d for p in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml"))
                for d in yaml.safe_load_all(p.read_text())]
        for d in docs:
            if d["kind"] == "Mesh":
                d["metadata"]["name"] = "served-tls"
            if d["kind"] == "Cluster":
                credential = "east" if d["metadata"]["name"] == "cluster1" else "west"
                d["spec"]["kubeconfig"] = {"credential": credential}
        intents = tmp_path / "mesh.yaml"
        intents.write_text(yaml.safe_dump_all(docs))
        applied = cli(editor, "apply", "-f", str(intents))
        assert applied.exit_code == 0, applied.stderr

        headers = {"Authorization": f"Bearer {editor}"}

        def all_applied() -> list | None:
            got = httpx.get(f"{url}/api/v1/status", headers=headers, verify=verify).json()["items"]
            return got if len(got) == 2 and all(s["state"] == "Applied" for s in got) else None

        assert {s["cluster"] for s in _wait(all_applied, 90)} == {"cluster1", "cluster2"}
        path = ("/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/"
                "httpbin.bar.cluster2")
        with c1.client() as k:
            found = k.get(path).json()
        assert found["metadata"]["labels"]["meshbridge.dev/mesh"] == "served-tls"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        remove_mesh((c1, c2), "served-tls")
