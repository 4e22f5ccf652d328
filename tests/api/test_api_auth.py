"""Bearer tokens and roles: who may read, write, render and manage tokens."""

from __future__ import annotations

from apitest import Api
from intents import doc, example_yaml
from sqlalchemy import select

from meshbridge.store import SqlStore
from meshbridge.store.schema import tokens_table

CLUSTER = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"}})


def test_health_needs_no_token_everything_else_does(api: Api) -> None:
    assert api.get("/healthz", role=None).status_code == 200
    assert api.get("/readyz", role=None).json() == {"status": "ok"}
    for url in ("/api/v1/apps", "/api/v1/clusters/x/manifests", "/api/v1/audit", "/metrics",
                "/api/v1/tokens"):
        r = api.get(url, role=None)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"].startswith("Bearer")
    bad = api.http.get("/api/v1/apps", headers={"Authorization": "Bearer mbt_000000000000_" + "A" * 43})
    assert bad.status_code == 401
    assert api.http.get("/api/v1/apps", headers={"Authorization": "Basic abc"}).status_code == 401


def test_roles(api: Api) -> None:
    assert api.put("/api/v1/clusters/east", CLUSTER, role="viewer").status_code == 403
    assert api.put("/api/v1/clusters/east", CLUSTER, role="editor").status_code == 201
    assert api.get("/api/v1/clusters/east", role="viewer").status_code == 200
    assert api.apply(example_yaml("sleep-httpbin"), role="viewer").status_code == 403
    assert api.delete("/api/v1/clusters/east", role="viewer").status_code == 403
    assert api.get("/api/v1/clusters/east/manifests", role="viewer").status_code == 403
    assert api.get("/api/v1/clusters/east/manifests", role="editor").status_code == 200
    assert api.get("/api/v1/tokens", role="editor").status_code == 403
    assert api.get("/api/v1/audit", role="viewer").status_code == 200
    assert api.get("/metrics", role="viewer").status_code == 200


def test_tokens_are_stored_hashed_and_can_be_revoked(api: Api, store: SqlStore) -> None:
    with store.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(select(tokens_table)).all() for v in row)
    for token in api.tokens.values():
        secret = token[len("mbt_000000000000_"):]
        assert token not in stored and secret not in stored
    listed = api.get("/api/v1/tokens", role="admin").json()["items"]
    assert {t["name"] for t in listed} == {"viewer-bot", "editor-bot", "admin-bot"}
    assert all("digest" not in t and "token" not in t for t in listed)

    made = api.http.post("/api/v1/tokens", json={"name": "ci", "role": "editor"},
                         headers=api.as_("admin"))
    assert made.status_code == 201
    new = made.json()["token"]
    assert api.http.get("/api/v1/apps", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert api.http.post("/api/v1/tokens", json={"name": "ci", "role": "editor"},
                         headers=api.as_("admin")).status_code == 409
    assert api.http.post("/api/v1/tokens", json={"name": "x", "role": "root"},
                         headers=api.as_("admin")).status_code == 422
    assert api.delete("/api/v1/tokens/ci", role="admin").status_code == 200
    assert api.http.get("/api/v1/apps", headers={"Authorization": f"Bearer {new}"}).status_code == 401
    assert api.delete("/api/v1/tokens/ci", role="admin").status_code == 404


def test_errors_never_echo_the_token(api: Api) -> None:
    secret = "mbt_aaaaaaaaaaaa_" + "s" * 43
    r = api.http.get("/api/v1/apps", headers={"Authorization": f"Bearer {secret}"})
    assert secret not in r.text and "sss" not in r.text
