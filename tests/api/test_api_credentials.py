"""Cluster credentials on the server: an editor cannot make the server read a file of its
choosing; admins register credentials, sealed in the store, never answered back; Clusters
name them; the reconciler uses them and reads no file a document names.

Whether the server opens a file is watched with an audit hook (``sys.addaudithook``): every
``open`` of the watched paths, by anything in the process, is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from apitest import Api
from fastapi.testclient import TestClient
from intents import doc
from tlsfiles import throwaway_key

from meshbridge.api import create_app
from meshbridge.errors import SealingError
from meshbridge.pki.sealing import Sealer
from meshbridge.server.catalog import Put
from meshbridge.server.credentials import PATH_REFUSED, Credentials
from meshbridge.server.reconciler import Reconciler
from meshbridge.store import SqlStore

KEY = bytes(range(32))
TOKEN_SECRET = "kube-token-" + "q" * 40
KEY_PEM = throwaway_key()
KEY_DATA = base64.b64encode(KEY_PEM).decode()
KEY_BODY = KEY_PEM.decode().splitlines()[1]  # a line of the key itself
CERT_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\npublic\n").decode()
CA_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nca\n").decode()

_WATCHED: set[str] = set()
_OPENED: list[str] = []


def _hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], str | bytes | Path):
        name = str(args[0], "utf-8", "replace") if isinstance(args[0], bytes) else str(args[0])
        if name in _WATCHED:
            _OPENED.append(name)


sys.addaudithook(_hook)  # hooks cannot be removed; this one only looks at _WATCHED


@pytest.fixture
def watched() -> Iterator[list[str]]:
    """Paths to watch (add to the set); the list of those opened."""
    _OPENED.clear()
    yield _OPENED
    _WATCHED.clear()
    _OPENED.clear()


def _watch(*paths: Path | str) -> None:
    _WATCHED.update(str(p) for p in paths)


@pytest.fixture
def vault(store: SqlStore) -> Credentials:
    return Credentials(store, lambda: Sealer(KEY))


@pytest.fixture
def capi(store: SqlStore, tokens: dict[str, str], vault: Credentials) -> Iterator[Api]:
    with TestClient(create_app(store, credentials=vault), raise_server_exceptions=False) as http:
        yield Api(http, tokens)


def kubeconfig(**user: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": "https://10.1.2.3:6443",
                                                  "certificate-authority-data": CA_DATA}}],
        "users": [{"name": "admin", "user": user or {"token": TOKEN_SECRET}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "admin"}}],
        "current-context": "prod",
    }


def _put(api: Api, name: str, config: object, role: str | None = "admin", as_yaml: bool = True):
    body = yaml.safe_dump(config).encode() if as_yaml else json.dumps(config).encode()
    ctype = "application/yaml" if as_yaml else "application/json"
    return api.http.put(f"/api/v1/credentials/{name}", content=body,
                        headers={**api.as_(role), "Content-Type": ctype})


def _cluster(kubeconfig_ref: dict) -> dict:
    return doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"},
                                   "kubeconfig": kubeconfig_ref})


# ------------------------------------------------------------------- no file of the caller's


def test_an_editor_cannot_make_the_server_read_a_file(capi: Api, tmp_path: Path,
                                                      watched: list[str]) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(throwaway_key(openssh=True))
    kubeconfig_file = tmp_path / "admin.conf"
    kubeconfig_file.write_text(yaml.safe_dump(kubeconfig()))
    chosen = ["/etc/passwd", str(key_file), str(kubeconfig_file), str(tmp_path / "missing")]
    _watch(*chosen)
    key_file.read_text()  # the watch works
    assert watched == [str(key_file)]
    watched.clear()
    answers = []
    for path in chosen:
        r = capi.put("/api/v1/clusters/east", _cluster({"path": path, "context": "prod"}))
        assert r.status_code == 422, r.text
        answers.append(r.json())
        applied = capi.apply(yaml.safe_dump(_cluster({"path": path})))
        assert applied.status_code == 422
        assert applied.json() == r.json()
    assert all(a == answers[0] for a in answers), "the answer depends on the file"
    assert answers[0] == {"errors": [{"document": "<body>#1 Cluster/east",
                                      "path": "spec.kubeconfig.path",
                                      "message": PATH_REFUSED,
                                      "source": "<body>", "index": 1,
                                      "kind": "Cluster", "name": "east"}]}
    text = json.dumps(answers)
    for leak in ("passwd", "root:", "PRIVATE KEY", "id_ed25519", "admin.conf", "missing",
                 "does not exist", "not a valid kubeconfig", "context"):
        assert leak not in text.replace("spec.kubeconfig.credential", "")
    assert capi.get("/api/v1/clusters/east").status_code == 404, "it was stored"
    assert watched == [], f"the server opened {watched}"


def test_a_stored_path_from_an_older_server_is_never_read(
    capi: Api, store: SqlStore, vault: Credentials, tmp_path: Path, watched: list[str]
) -> None:
    """A Cluster an older server stored with spec.kubeconfig.path: the reconciler reports why
    it does not reach it, and opens nothing."""
    target = tmp_path / "admin.conf"
    target.write_text(yaml.safe_dump(kubeconfig()))
    _watch(target, "/etc/passwd")
    server = capi.http.app.state.server
    for name, path in (("east", str(target)), ("west", "/etc/passwd")):
        body = doc("Cluster", name, {"gateway": {"address": "10.0.0.1"},
                                     "kubeconfig": {"path": path}})
        server.catalog.write([Put(body, "<legacy>", 1)], "old-server")  # past the API's check
    reconciler = Reconciler(server.catalog, credentials=vault)
    reports = asyncio.run(reconciler.reconcile_once())
    assert {r.cluster: (r.state, r.error) for r in reports} == {
        "east": ("Failed", f"kubeconfig: {PATH_REFUSED}"),
        "west": ("Failed", f"kubeconfig: {PATH_REFUSED}"),
    }
    status = capi.get("/api/v1/status").json()["items"]
    assert {s["cluster"]: s["error"] for s in status} == {
        "east": f"kubeconfig: {PATH_REFUSED}", "west": f"kubeconfig: {PATH_REFUSED}"}
    assert watched == [], f"the server opened {watched}"


# -------------------------------------------------------------------------- admins register


def test_only_admins_manage_credentials(capi: Api) -> None:
    for role in (None, "viewer", "editor"):
        want = 401 if role is None else 403
        assert capi.get("/api/v1/credentials", role=role).status_code == want
        assert capi.get("/api/v1/credentials/prod", role=role).status_code == want
        assert _put(capi, "prod", kubeconfig(), role=role).status_code == want
        assert capi.delete("/api/v1/credentials/prod", role=role).status_code == want
    assert capi.get("/api/v1/credentials", role="admin").json() == {"items": []}


def test_an_admin_registers_lists_replaces_and_deletes(
    capi: Api, store: SqlStore, vault: Credentials
) -> None:
    made = _put(capi, "prod", kubeconfig())
    assert made.status_code == 201, made.text
    view = made.json()
    assert view["name"] == "prod" and view["updatedBy"] == "admin-bot"
    assert view["contexts"] == [{"name": "prod", "cluster": "prod",
                                 "server": "https://10.1.2.3:6443", "user": "admin",
                                 "auth": "token"}]
    assert view["currentContext"] == "prod"
    listed = capi.get("/api/v1/credentials", role="admin")
    assert [c["name"] for c in listed.json()["items"]] == ["prod"]
    cert_user = {"client-certificate-data": CERT_DATA, "client-key-data": KEY_DATA}
    replaced = _put(capi, "prod", kubeconfig(**cert_user), as_yaml=False)
    assert replaced.status_code == 200
    assert replaced.json()["contexts"][0]["auth"] == "client-certificate"
    assert replaced.json()["created"] == view["created"]

    # never answered back, never stored in clear
    answers = made.text + listed.text + replaced.text + capi.get(
        "/api/v1/credentials/prod", role="admin").text
    stored = b"".join(store.list_blobs("cluster.credential").values())
    for secret in (TOKEN_SECRET, KEY_DATA, CERT_DATA, CA_DATA, KEY_BODY):
        assert secret not in answers
        assert secret.encode() not in stored
    assert vault.kubeconfig("prod")["users"][0]["user"] == cert_user  # it opens with the key
    audit = capi.get("/api/v1/audit", params={"kind": "Credential"}).json()["items"]
    assert [(a["verb"], a["name"], a["actor"]) for a in audit] == [
        ("create", "prod", "admin-bot"), ("update", "prod", "admin-bot")]

    # a Cluster names it; while one does, it stays
    assert capi.put("/api/v1/clusters/east",
                    _cluster({"credential": "prod", "context": "prod"})).status_code == 201
    refused = capi.delete("/api/v1/credentials/prod", role="admin")
    assert refused.status_code == 409 and "east" in refused.text
    assert capi.delete("/api/v1/clusters/east").status_code == 200
    assert capi.delete("/api/v1/credentials/prod", role="admin").status_code == 200
    assert capi.get("/api/v1/credentials/prod", role="admin").status_code == 404
    assert capi.delete("/api/v1/credentials/prod", role="admin").status_code == 404


@pytest.mark.parametrize(
    ("user", "cluster", "path", "words"),
    [
        ({"tokenFile": "/var/run/secrets/token"}, {}, "users[0].user.tokenFile", "names a file"),
        ({"client-certificate": "/etc/passwd", "client-key": "/root/.ssh/id_rsa"}, {},
         "users[0].user.client-key", "names a file"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh",
                   "args": ["-c", "cat /etc/shadow"]}}, {}, "users[0].user.exec",
         "runs a program"),
        ({"auth-provider": {"name": "gcp"}}, {}, "users[0].user.auth-provider", "runs a program"),
        ({"token": "t"}, {"certificate-authority": "/etc/ssl/private/server.key"},
         "clusters[0].cluster.certificate-authority", "names a file"),
        ({"token": "t"}, {"server": "http://10.1.2.3:8080"}, "clusters[0].cluster.server",
         "https://"),
        ({"client-key-data": "not base64!"}, {}, "users[0].user.client-key-data", "base64"),
        ({"token": "t", "as": "system:admin"}, {}, "users[0].user.as", "not supported"),
    ],
)
def test_registration_refuses_what_needs_the_servers_files(
    capi: Api, watched: list[str], user: dict, cluster: dict, path: str, words: str
) -> None:
    _watch("/etc/passwd", "/root/.ssh/id_rsa", "/var/run/secrets/token",
           "/etc/ssl/private/server.key", "/bin/sh")
    config = kubeconfig(**user)
    config["clusters"][0]["cluster"].update(cluster)
    r = _put(capi, "prod", config)
    assert r.status_code == 422, r.text
    found = {e["path"]: e["message"] for e in r.json()["errors"]}
    assert path in found and words in found[path]
    assert all(e["document"] == "kubeconfig#1 Credential/prod" for e in r.json()["errors"])
    for value in ("/etc/passwd", "id_rsa", "/etc/shadow", "server.key", "/var/run/secrets"):
        assert value not in r.text
    assert watched == []
    assert capi.get("/api/v1/credentials", role="admin").json() == {"items": []}


def test_a_broken_kubeconfig_is_located_not_quoted(capi: Api) -> None:
    body = f"clusters: []\nusers:\n- name: a\n  user: {{token: {TOKEN_SECRET}\n".encode()
    r = capi.http.put("/api/v1/credentials/prod", content=body,
                      headers={**capi.as_("admin"), "Content-Type": "application/yaml"})
    assert r.status_code == 422
    assert "line" in r.json()["errors"][0]["message"]
    assert TOKEN_SECRET not in r.text and "kube-token" not in r.text
    for bad in (b"", b"[1, 2]", b"clusters: 3\ncontexts: []\n"):
        r = capi.http.put("/api/v1/credentials/prod", content=bad,
                          headers={**capi.as_("admin"), "Content-Type": "application/yaml"})
        assert r.status_code == 422, (bad, r.text)
    assert _put(capi, "Not_A_Label", kubeconfig()).status_code == 422


def test_without_a_state_key_nothing_is_registered(store: SqlStore, tokens: dict[str, str]
                                                   ) -> None:
    def no_key() -> Sealer:
        raise SealingError("the state key file /srv/meshbridge/db.key is missing")

    app = create_app(store, credentials=Credentials(store, no_key))
    with TestClient(app, raise_server_exceptions=False) as http:
        r = _put(Api(http, tokens), "prod", kubeconfig())
    assert r.status_code == 503
    assert "state key" in r.text and "/srv/meshbridge" not in r.text
    assert store.list_blobs("cluster.credential") == {}


def test_clusters_name_credentials_and_the_reconciler_finds_them(
    capi: Api, vault: Credentials
) -> None:
    from meshbridge.server.credentials import cluster_targets

    assert _put(capi, "prod", kubeconfig()).status_code == 201
    assert capi.put("/api/v1/clusters/east",
                    _cluster({"credential": "prod", "context": "prod"})).status_code == 201
    west = doc("Cluster", "west", {"gateway": {"address": "10.0.0.2"},
                                   "kubeconfig": {"credential": "nobody"}})
    assert capi.put("/api/v1/clusters/west", west).status_code == 201
    both = doc("Cluster", "north", {"gateway": {"address": "10.0.0.3"},
                                    "kubeconfig": {"credential": "prod", "path": "/x"}})
    assert capi.put("/api/v1/clusters/north", both).status_code == 422
    catalog = capi.http.app.state.server.catalog
    with catalog.writing():
        catalog.sync()
        intents = catalog.blueprint().snapshot.intents
        targets = {t.name: t for t in cluster_targets(intents, vault)}
    assert targets["east"].config == kubeconfig() and targets["east"].context == "prod"
    assert targets["east"].kubeconfig is None and not targets["east"].unusable
    assert TOKEN_SECRET not in repr(targets["east"])
    assert targets["west"].config is None
    assert targets["west"].unusable.startswith("no credential named 'nobody' is registered")
