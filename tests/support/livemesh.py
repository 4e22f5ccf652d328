"""A mesh of its own on the session's shared API servers (``tests/integration``): its documents
pointed at the test clusters' kubeconfigs, a name of its own (``next_mesh``; the ``mesh`` fixture
in tests/integration/conftest.py prunes it afterwards), and ``apply`` run as a user runs it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from helpers import EXAMPLES, write_docs

API = "meshbridge.dev/v1alpha1"
_ids = itertools.count()


def next_mesh() -> str:
    """A mesh name no other test of the session uses."""
    return f"m{next(_ids)}"


def mesh_docs(name: str) -> list[dict[str, Any]]:
    return [{"apiVersion": API, "kind": "Mesh", "metadata": {"name": name}, "spec": {}}]


def point_at(docs: list[dict[str, Any]], kubeconfigs: dict[str, Path]) -> list[dict[str, Any]]:
    for d in docs:
        if d["kind"] == "Cluster":
            d.setdefault("spec", {})["kubeconfig"] = {"path": str(kubeconfigs[d["metadata"]["name"]])}
    return docs


def example_for(name: str, mesh: str, kubeconfigs: dict[str, Path]) -> list[dict[str, Any]]:
    docs = [d for p in sorted((EXAMPLES / name).glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    docs = [d for d in docs if d["kind"] != "Mesh"] + mesh_docs(mesh)
    return point_at(docs, kubeconfigs)


def apply_docs(cli, tmp: Path, docs: list[dict[str, Any]], *extra: str):
    src = write_docs(tmp / "intents" / "mesh.yaml", docs)
    return cli("apply", "-f", str(src), *extra)
