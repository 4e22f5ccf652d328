"""GET /api/v1/graph and the page at /ui/: any role reads the graph; the page is static and
carries a Content-Security-Policy of 'self'."""

from __future__ import annotations

from apitest import Api
from intents import example_yaml


def test_a_viewer_reads_the_graph_and_it_follows_writes(api: Api) -> None:
    assert api.apply(example_yaml("three-clusters")).status_code == 200
    answer = api.get("/api/v1/graph", role="viewer")
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert graph["kind"] == "MeshGraph" and graph["summary"]["clusters"] == 3
    assert graph["layout"]["expandedClusters"] == ["east-1", "east-2", "west-1"]
    assert "BEGIN" not in answer.text and "240." not in answer.text
    assert api.delete("/api/v1/namespaces/pay/externalservices/card-processor").status_code == 200
    again = api.get("/api/v1/graph", role="viewer").json()
    assert again["egress"] == [] and again["revision"] != graph["revision"]


def test_the_graph_needs_a_valid_token(api: Api) -> None:
    assert api.get("/api/v1/graph", role=None).status_code == 401
    bad = {"Authorization": "Bearer mbt_000000000000_" + "x" * 43}
    assert api.http.get("/api/v1/graph", headers=bad).status_code == 401


def test_the_page_is_static_and_locked_to_its_origin(api: Api) -> None:
    page = api.get("/ui/", role=None)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script src=\"graph.js\"" in page.text and "east-1" not in page.text
    for name in ("graph.js", "graph.css"):
        assert api.get(f"/ui/{name}", role=None).headers["content-security-policy"] == csp
    assert api.get("/ui/nothing.js", role=None).status_code == 404
    assert api.http.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
