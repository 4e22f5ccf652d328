"""Helpers shared by the test suites (importable as ``helpers``; tests/conftest.py puts
tests/support on sys.path)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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


TESTENV_SCRIPT = ROOT / "scripts" / "k8s-testenv"
TEST_TOOLS = ("kube-apiserver", "etcd", "istioctl", "pilot-discovery", "pilot-agent")


def build_test_tools(config: Any) -> dict[str, Path]:
    """Build or reuse every binary the real-server tests need (``k8s-testenv build --istio``:
    kube-apiserver, etcd, istioctl, istiod, pilot-agent; ~8 min cold on 2 cores, well under a
    second when cached), showing its progress through pytest's capture, and return
    {name: path}. A failed build fails the test: it never skips it."""
    capman = config.pluginmanager.getplugin("capturemanager")
    shown = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
    with shown:
        sys.stderr.write("\nk8s-testenv: building or reusing kube-apiserver, etcd, istioctl, "
                         "istiod and pilot-agent (cold: ~8 min on 2 cores)\n")
        sys.stderr.flush()
        proc = subprocess.run([sys.executable, str(TESTENV_SCRIPT), "build", "--istio"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                              check=False, env=os.environ.copy())
    if proc.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv build --istio failed (exit {proc.returncode}); see "
                    f"its output above", pytrace=False)
    pairs = (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    paths = {name.strip(): Path(path.strip()) for name, path in pairs}
    unusable = [n for n in TEST_TOOLS if n not in paths or not os.access(paths[n], os.X_OK)]
    if unusable:
        pytest.fail(f"scripts/k8s-testenv build --istio gave no executable "
                    f"{', '.join(unusable)}; its stdout was:\n{proc.stdout}", pytrace=False)
    return paths



def store_from_before_identities(location: str, applied: list[str]) -> None:
    """Make ``location`` a state store as a meshbridge without mesh identities left it (schema
    revision 0002), having applied to the clusters ``applied``; opening it again upgrades it."""
    import json

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from meshbridge.store import open_store

    store = open_store(location)
    try:
        with store.engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", "meshbridge.store:migrations")
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
            for cluster in applied:
                record = {"cluster": cluster, "state": "Applied", "error": "", "time": "",
                          "attempts": 1, "objects": []}
                conn.execute(text("DELETE FROM blobs WHERE kind = 'status' AND name = :n"), {"n": cluster})
                conn.execute(text("INSERT INTO blobs (kind, name, data) VALUES ('status', :n, :d)"),
                             {"n": cluster, "d": json.dumps(record).encode()})
    finally:
        store.close()


def with_server_credentials(http: Any, admin: dict[str, str], docs: list[dict[str, Any]]
                            ) -> list[dict[str, Any]]:
    """``docs`` as a meshbridge server takes them: each Cluster's kubeconfig file registered
    (by an admin, through ``http``) as a credential named after the Cluster, which the Cluster
    then names instead of the file (a server reads no file a document names)."""
    out = []
    for doc in docs:
        ref = (doc.get("spec") or {}).get("kubeconfig") if doc["kind"] == "Cluster" else None
        if ref and "path" in ref:
            name = doc["metadata"]["name"]
            r = http.put(f"/api/v1/credentials/{name}", content=Path(ref["path"]).read_bytes(),
                         headers={**admin, "Content-Type": "application/yaml"})
            assert r.status_code in (200, 201), r.text
            kept = {k: v for k, v in ref.items() if k != "path"}
            doc = {**doc, "spec": {**doc["spec"], "kubeconfig": {**kept, "credential": name}}}
        out.append(doc)
    return out


def wait_for(condition: Callable[[], Any], what: str = "the condition", timeout: float = 60.0,
             pause: float = 0.3, explain: Callable[[], Any] | None = None) -> Any:
    """``condition()``'s first true value, asked every ``pause`` seconds; AssertionError naming
    ``what`` (and ``explain()``, if given) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"not reached in {timeout:.0f} s: {what}"
                         + (f"\n{explain()}" if explain else ""))
