"""`render --server -o DIR` against a hostile server: whatever names it sends, nothing is
written outside DIR, and a refused answer writes nothing at all (DIR keeps its last render).

The server is a small FastAPI app under a real uvicorn on 127.0.0.1 that answers the two
calls a remote render makes (list clusters, each cluster's manifests) with names of its
choosing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pgcluster import free_port

TOKEN = "mbt_0123456789ab_" + "x" * 43


def _object(namespace: str | None = "foo", name: str = "httpbin", kind: str = "ServiceEntry"
            ) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": meta,
            "spec": {"hosts": ["httpbin.bar.global"]}}


@dataclass
class Hostile:
    """What the server answers: cluster names, and each cluster's objects."""

    url: str = ""
    clusters: list[str] = field(default_factory=list)
    objects: dict[str, list[dict]] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    state = Hostile()
    app = FastAPI()

    @app.get("/api/v1/clusters")
    def clusters() -> dict:
        state.requested.append("/api/v1/clusters")
        return {"items": [{"metadata": {"name": n}} for n in state.clusters]}

    @app.get("/api/v1/clusters/{name:path}/manifests")
    def manifests(name: str) -> JSONResponse:
        state.requested.append(f"/api/v1/clusters/{name}/manifests")
        body = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "7"},
                "items": state.objects.get(name, [])}
        return JSONResponse(body)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the hostile server did not start"
        time.sleep(0.05)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def render(cli, hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MESHBRIDGE_TOKEN", TOKEN)
    out = tmp_path / "work" / "out"

    def run(*extra: str):
        return cli("render", "--server", hostile.url, "-o", str(out), *extra)

    return run, out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_benign_answer_is_written_inside_dir(render, hostile: Hostile) -> None:
    run, out = render
    hostile.clusters = ["c1"]
    hostile.objects = {"c1": [_object()]}
    result = run()
    assert result.exit_code == 0, result.stderr
    assert (out / "c1" / "foo" / "serviceentry.httpbin.yaml").is_file()


HOSTILE_OBJECTS = {
    "namespace ../../x": (_object(namespace="../../escaped"), "'..'"),
    "namespace ..": (_object(namespace=".."), "'..'"),
    "absolute namespace": (_object(namespace="/tmp/escaped"), "absolute"),
    "name with ../": (_object(name="../../../escaped/evil"), "'..'"),
    "name with a slash": (_object(name="a/b"), "not <cluster>/<namespace>/<file>"),
    "hidden namespace (the render marker)": (_object(namespace=".meshbridge-render"), "hidden"),
    "backslash": (_object(namespace="foo\\..\\..\\escaped"), "separator or control character"),
    "NUL": (_object(namespace="foo\x00bar"), "separator or control character"),
    "newline": (_object(name="a\nb"), "separator or control character"),
    "no metadata": ({"kind": "ServiceEntry"}, "not a Kubernetes object"),
    "a name that is a number": (_object(name=12), "not a Kubernetes object"),  # type: ignore[arg-type]
    "a list, not an object": (["x"], "not a ManifestList"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_OBJECTS))
def test_a_hostile_object_name_writes_nothing(render, hostile: Hostile, tmp_path: Path,
                                              case: str) -> None:
    run, out = render
    hostile.clusters = ["c1"]
    hostile.objects = {"c1": [_object()]}
    assert run().exit_code == 0
    before = _tree(out)
    outside_before = sorted(str(p) for p in tmp_path.rglob("*"))

    obj, why = HOSTILE_OBJECTS[case]
    hostile.objects = {"c1": [_object(name="fine"), obj]}
    result = run()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "nothing was written" in result.stderr
    assert why in result.stderr
    assert _tree(out) == before, "DIR changed"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == outside_before, "a file was written"
    assert not list(Path("/tmp").glob("escaped*"))


@pytest.mark.parametrize("cluster", ["../../escaped", "..", "/etc", "c1/../..", "C1", ".hidden",
                                     "a" * 64, "c1%2f..%2f.."])
def test_a_hostile_cluster_name_is_refused_before_it_is_used(
    render, hostile: Hostile, tmp_path: Path, cluster: str
) -> None:
    run, out = render
    hostile.clusters = ["c1", cluster]
    hostile.objects = {"c1": [_object()], cluster: [_object()]}
    result = run()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "which is not a DNS label" in result.stderr
    assert "nothing was written" in result.stderr
    assert not out.exists()
    assert hostile.requested == ["/api/v1/clusters"], "a manifests URL was built from the name"


def test_the_secrets_dir_is_checked_too(render, hostile: Hostile, tmp_path: Path) -> None:
    run, out = render
    secret = _object(namespace="../../../escaped", name="cacerts", kind="Secret")
    secret["data"] = {"ca-key.pem": "a2V5"}
    hostile.clusters = ["c1"]
    hostile.objects = {"c1": [secret]}
    result = run("--secrets-dir", str(tmp_path / "work" / "keys"))
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "'..'" in result.stderr
    assert not (tmp_path / "work" / "keys").exists() and not out.exists()
    assert not (tmp_path / "escaped").exists()


def test_a_symlinked_output_dir_still_holds_the_files(render, hostile: Hostile,
                                                     tmp_path: Path) -> None:
    """DIR may itself be a link (the user's choice); the files land inside its target."""
    run, out = render
    target = tmp_path / "real"
    target.mkdir()
    out.parent.mkdir(parents=True)
    out.symlink_to(target)
    hostile.clusters = ["c1"]
    hostile.objects = {"c1": [_object()]}
    result = run()
    assert result.exit_code == 0, result.stderr
    assert (out / "c1" / "foo" / "serviceentry.httpbin.yaml").is_file()
