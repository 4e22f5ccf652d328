"""Intent documents for tests: one document (:func:`doc`), the examples' documents, a small
two-cluster mesh (:func:`base`, :func:`intent`), and the check every bad-input test makes
(:func:`assert_rejected`: exit 2, the file named, nothing written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from helpers import EXAMPLES, write_docs

API = "meshbridge.dev/v1alpha1"


def example_docs(name: str) -> list[dict]:
    docs: list[dict] = []
    for path in sorted((EXAMPLES / name).glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def example_yaml(name: str) -> str:
    return yaml.safe_dump_all(example_docs(name), sort_keys=False)


def server_yaml(name: str) -> str:
    """An example as a meshbridge server stores it: a Cluster's kubeconfig file becomes a
    credential of the Cluster's name (a server reads no file; rendering needs no credential)."""
    docs = []
    for d in example_docs(name):
        ref = (d.get("spec") or {}).get("kubeconfig") if d["kind"] == "Cluster" else None
        if ref and "path" in ref:
            ref = {k: v for k, v in ref.items() if k != "path"} | {
                "credential": d["metadata"]["name"]}
            d = {**d, "spec": {**d["spec"], "kubeconfig": ref}}
        docs.append(d)
    return yaml.safe_dump_all(docs, sort_keys=False)


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, namespace: str | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    out: dict = {"apiVersion": API, "kind": kind, "metadata": meta}
    if spec is not None:
        out["spec"] = spec
    return out


def base() -> list[dict[str, Any]]:
    return [
        doc("Cluster", "c1", {"gateway": {"address": "10.0.0.1"}}, labels={"region": "east"}),
        doc("Cluster", "c2", {"gateway": {"address": "10.0.0.2"}}, labels={"region": "west"}),
        doc("App", "sleep", {"clusters": ["c1"]}, "foo"),
        doc("App", "httpbin", {"clusters": ["c2"]}, "bar"),
    ]


def intent(name: str = "httpbin", **spec: Any) -> dict[str, Any]:
    body = {"app": "httpbin", "port": 8000, "clients": [{"app": "sleep", "namespace": "foo"}]}
    body.update(spec)
    return doc("InboundIntent", name, body, "bar")


def assert_rejected(cli, tmp_path: Path, docs: list[dict[str, Any]], *expected: str) -> str:
    src = write_docs(tmp_path / "in" / "mesh.yaml", docs)
    out = tmp_path / "out"
    result = cli("render", "-f", str(src), "-o", str(out))
    assert result.exit_code == 2, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert str(src) in result.stderr
    assert not out.exists(), "render wrote output for invalid input"
    assert not (tmp_path / "state").exists(), "render touched the state store for invalid input"
    return result.stderr
