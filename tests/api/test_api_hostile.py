"""The server on hostile input (issue 26), in-process: every body of the catalogue
(tests/support/hostile.py) is 400 or 422 with its reason, never a 500; a kubeconfig bomb is
never stored; a caller without a token gets 401 before any body is read; metrics labels come
from the route table; the trailing-slash redirect is relative. Any YAML, JSON or bytes thrown
at the routes that take a body gets one of the documented statuses (a hypothesis property).
The same against a real `meshbridge serve`, and /healthz meanwhile: test_api_hostile_live.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from apitest import Api, api_routes
from fastapi.testclient import TestClient
from hostile import HOSTILE, HOSTILE_KUBECONFIGS, alias_bomb, json_texts, raw_bytes, yaml_texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbridge.api import create_app
from meshbridge.pki.sealing import Sealer
from meshbridge.server.credentials import Credentials
from meshbridge.server.tokens import create_token
from meshbridge.store import SqlStore, open_store

DOCUMENTED = {400, 401, 403, 404, 409, 413, 422}  # docs/server.md, "Errors" (and 2xx)
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def vault_api(store: SqlStore, tokens: dict[str, str]) -> Iterator[Api]:
    credentials = Credentials(store, lambda: Sealer(bytes(32)))
    with TestClient(create_app(store, credentials=credentials),
                    raise_server_exceptions=False) as http:
        yield Api(http, tokens)


def _shown(errors: list[dict]) -> str:
    """Every field of every error item, as a client would print them."""
    return " ".join(str(value) for item in errors for value in item.values())


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_body_is_refused_with_its_reason(api: Api, case: str) -> None:
    hostile = HOSTILE[case]
    headers = {**api.as_("editor"), "Content-Type": hostile.ctype}
    for method, url in (("POST", "/api/v1/apply"), ("PUT", "/api/v1/namespaces/foo/apps/bomb")):
        answer = api.http.request(method, url, content=hostile.text, headers=headers)
        assert answer.status_code in hostile.statuses, answer.text[:500]
        text = answer.text
        assert hostile.why in _shown(answer.json()["errors"])
        assert len(text) < 4000, "the answer echoes the body"
    assert api.get("/api/v1/apps").json()["items"] == []


def test_a_json_body_100000_deep_is_refused_on_every_route(vault_api: Api) -> None:
    """FastAPI parsed POST /api/v1/tokens itself, and answered 500 (RecursionError). A
    kubeconfig that cannot be read is 422, located in it, as it always was."""
    for method, url, status in (("POST", "/api/v1/tokens", 400), ("POST", "/api/v1/apply", 400),
                                ("PUT", "/api/v1/clusters/c1", 400),
                                ("PUT", "/api/v1/credentials/east", 422)):
        answer = vault_api.http.request(method, url, content=DEEP_JSON, headers={
            **vault_api.as_("admin"), "Content-Type": "application/json"})
        assert answer.status_code == status, (url, answer.text[:300])
        assert "nested too deeply" in answer.text


def test_a_token_request_is_read_and_checked_as_any_body(vault_api: Api) -> None:
    admin = vault_api.as_("admin")
    made = vault_api.http.post("/api/v1/tokens", content=b"name: ci\nrole: viewer\n",
                               headers={**admin, "Content-Type": "application/yaml"})
    assert made.status_code == 201 and made.json()["token"].startswith("mbt_")
    missing = vault_api.http.post("/api/v1/tokens", json={"name": "x"}, headers=admin)
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "body.role"
    bomb = vault_api.http.post("/api/v1/tokens", content=alias_bomb("kind").encode(),
                               headers={**admin, "Content-Type": "application/yaml"})
    assert bomb.status_code == 400 and "alias bomb" in bomb.text


@pytest.mark.parametrize("case", sorted(HOSTILE_KUBECONFIGS))
def test_a_hostile_kubeconfig_is_refused_and_nothing_is_stored(vault_api: Api, store: SqlStore,
                                                               case: str) -> None:
    text, why = HOSTILE_KUBECONFIGS[case]
    answer = vault_api.http.put("/api/v1/credentials/east", content=text.encode(), headers={
        **vault_api.as_("admin"), "Content-Type": "application/yaml"})
    assert answer.status_code == 422, answer.text[:300]
    assert why in _shown(answer.json()["errors"])
    with store.reading():
        assert store.list_blobs("cluster.credential") == {}


def test_no_route_has_fastapi_read_its_body(api: Api) -> None:
    """Every body is read by the route, after the token is checked, through loading: FastAPI
    reads a declared body before any dependency runs, with json.loads and no limit."""
    routes = api_routes(api.http.app.routes)
    assert routes and all(route.body_field is None for route in routes), [
        route.path for route in routes if route.body_field is not None]


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, URL) the app serves, but health: a name in each parameter."""
    schema = app.openapi()
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if path not in ("/healthz", "/readyz"):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return [*found, ("GET", "/openapi.json"), ("GET", "/metrics")]


@pytest.mark.parametrize("body", ["bomb", "deep", "too large", "declared too large"])
def test_without_a_token_every_route_is_401_whatever_the_body(api: Api, body: str) -> None:
    """Authentication runs before the body is read: not 400, 413 or 422 (POST /api/v1/tokens
    read and validated its body first)."""
    content, headers = {
        "bomb": (alias_bomb("kind").encode(), {"Content-Type": "application/yaml"}),
        "deep": (DEEP_JSON, {"Content-Type": "application/json"}),
        "too large": (b"x" * (9 << 20), {}),
        "declared too large": (b"{}", {"Content-Length": str(10**12)}),
    }[body]
    routes = _routes(api.http.app)
    assert len(routes) >= 30 and ("POST", "/api/v1/tokens") in routes
    for method, url in routes:
        if body == "declared too large":  # what a client may claim before sending anything
            request = api.http.build_request(method, url, content=content)
            request.headers.update(headers)
            answer = api.http.send(request)
        else:
            answer = api.http.request(method, url, content=content, headers=headers)
        assert answer.status_code == 401, f"{method} {url}: {answer.status_code}"


def test_invented_methods_and_paths_do_not_grow_the_metrics(api: Api) -> None:
    for i in range(300):
        method = f"X{i:04d}" + "M" * 2000
        api.http.request(method, f"/api/v1/clusters/{'p' * 1000}{i}")
        api.http.request(method, "/api/v1/apply")
        api.http.request("GET", f"/nowhere/{'p' * 1000}{i}")
    text = api.get("/metrics").text
    assert "MMMM" not in text and "pppp" not in text
    assert len(text) < 50_000
    assert 'meshbridge_http_requests_total{method="other",route="/api/v1/apply",status="405"} 300.0' in text
    assert 'method="other",route="/api/v1/clusters/{name}",status="405"} 300.0' in text
    assert 'method="other",route="other",status="404"} 300.0' in text


def test_the_trailing_slash_redirect_is_relative(api: Api) -> None:
    answer = api.get("/api/v1/clusters/?labelSelector=a%3Db", follow_redirects=False,
                     headers={"Host": "attacker.example"})
    assert answer.status_code == 307
    assert answer.headers["location"] == "/api/v1/clusters?labelSelector=a%3Db"
    assert api.get("/api/v1/clusters/").status_code == 200  # followed


# ----------------------------------------------------------------- any body, any route


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[Api]:
    """One SQLite store for all the examples of a property (documents may be stored)."""
    store = open_store(f"sqlite:///{tmp_path / 'fuzz.db'}")
    tokens = {role: create_token(store, f"{role}-bot", role) for role in ("admin",)}
    credentials = Credentials(store, lambda: Sealer(bytes(32)))
    with TestClient(create_app(store, credentials=credentials),
                    raise_server_exceptions=False) as http:
        yield Api(http, tokens)
    store.close()


BODY_ROUTES = [("POST", "/api/v1/apply"), ("PUT", "/api/v1/namespaces/foo/apps/x"),
               ("PUT", "/api/v1/clusters/c1"), ("PUT", "/api/v1/credentials/east"),
               ("POST", "/api/v1/tokens")]
CTYPES = st.sampled_from(["application/json", "application/yaml", "text/plain", ""])


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(BODY_ROUTES), ctype=CTYPES,
       body=st.one_of(yaml_texts.map(str.encode), json_texts.map(str.encode), raw_bytes))
def test_any_body_on_any_route_gets_a_documented_answer(fuzzed: Api, route: tuple[str, str],
                                                        ctype: str, body: bytes) -> None:
    method, url = route
    headers = {**fuzzed.as_("admin"), **({"Content-Type": ctype} if ctype else {})}
    answer = fuzzed.http.request(method, url, content=body, headers=headers)
    assert 200 <= answer.status_code < 300 or answer.status_code in DOCUMENTED, answer.text[:500]
    assert "Traceback" not in answer.text and "internal error" not in answer.text


def test_a_resource_version_of_the_body_is_quoted_bounded_and_escaped(api: Api) -> None:
    cluster = {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Cluster",
               "metadata": {"name": "c1", "resourceVersion": "\x1b]0;x\x07" + "9" * 100_000},
               "spec": {"gateway": {"address": "10.0.0.1"}}}
    answer = api.put("/api/v1/clusters/c1", cluster)
    assert answer.status_code == 409
    message = answer.json()["errors"][0]["message"]
    assert message.startswith("Cluster c1: resourceVersion \\x1b]0;x\\x0799") and len(message) < 300
