"""Helpers shared by the test suites (importable as ``helpers``; tests/conftest.py puts
tests/support on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def write_docs(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def read_tree(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Relative path -> parsed documents, for every YAML file below root."""
    return {
        str(p.relative_to(root)): [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        for p in sorted(root.rglob("*.yaml"))
    }


MESH_KINDS = [
    ("api/v1", "secrets"),
    ("apis/networking.istio.io/v1beta1", "serviceentries"),
    ("apis/networking.istio.io/v1beta1", "destinationrules"),
    ("apis/networking.istio.io/v1beta1", "gateways"),
    ("apis/networking.istio.io/v1beta1", "virtualservices"),
    ("apis/security.istio.io/v1beta1", "authorizationpolicies"),
]


def remove_mesh(clusters: Any, mesh: str) -> None:
    """Delete every object of ``mesh`` from test clusters (they are shared with other tests)."""
    for cluster in clusters:
        with cluster.client() as http:
            for prefix, plural in MESH_KINDS:
                found = http.get(f"/{prefix}/{plural}", params={"labelSelector": f"meshbridge.dev/mesh={mesh}"})
                for item in found.json().get("items", []):
                    meta = item["metadata"]
                    http.delete(f"/{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}")
