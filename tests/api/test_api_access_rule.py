"""The documented access rule, checked on every route the app has: nothing but health (and the
mesh page's static files, which hold no data) answers without a token — the OpenAPI document
included. There is no Swagger UI (it would load its script from a CDN)."""

from __future__ import annotations

import re

from apitest import Api, api_routes

PUBLIC = {"/healthz", "/readyz"}
# the mesh page's static shell, script and style sheet: no data (it asks for a token and reads
# /api/v1/graph with it; tests/api/test_api_graph.py, docs/server.md "The page")
STATIC = {"/ui", "/ui/", "/ui/{name}"}


def test_every_route_but_health_needs_a_token(api: Api) -> None:
    routes = api_routes(api.http.app.routes)
    paths = {r.path for r in routes}
    assert {"/openapi.json", "/metrics", "/api/v1/apply"} <= paths
    assert "/docs" not in paths
    checked = 0
    for route in routes:
        if route.path in PUBLIC | STATIC:
            continue
        url = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            r = api.http.request(method, url, content=b"{}",
                                 headers={"Content-Type": "application/json"})
            assert r.status_code == 401, f"{method} {route.path} answered {r.status_code}"
            assert r.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 30
    for path in PUBLIC:
        assert api.get(path, role=None).status_code == 200


def test_openapi_answers_any_role_and_no_page_loads_from_outside(api: Api) -> None:
    schema = api.get("/openapi.json", role="viewer")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "meshbridge"
    assert "/api/v1/clusters/{name}" in schema.json()["paths"]
    assert "/openapi.json" not in schema.json()["paths"]  # described elsewhere: docs/server.md
    assert api.get("/docs", role="viewer").status_code == 404
    bad = api.http.get("/openapi.json", headers={"Authorization": "Bearer mbt_000000000000_" + "A" * 43})
    assert bad.status_code == 401
