"""Fixtures of the API suite: a store on each backend, tokens of each role, an in-process
client, and a real ``meshbridge serve`` process (uvicorn) on 127.0.0.1."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dbfixtures
import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from pgcluster import free_port

from meshbridge.api import create_app
from meshbridge.server.tokens import create_token
from meshbridge.store import SqlStore, open_store

backend = dbfixtures.backend
db_url = dbfixtures.db_url
empty_db_url = dbfixtures.empty_db_url
pg = dbfixtures.pg
pg_template = dbfixtures.pg_template

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
API = "meshbridge.dev/v1alpha1"


def example_docs(name: str) -> list[dict]:
    docs: list[dict] = []
    for path in sorted((EXAMPLES / name).glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def example_yaml(name: str) -> str:
    return yaml.safe_dump_all(example_docs(name), sort_keys=False)


def doc(kind: str, name: str, spec: dict | None = None, namespace: str | None = None,
        labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    out: dict = {"apiVersion": API, "kind": kind, "metadata": meta}
    if spec is not None:
        out["spec"] = spec
    return out


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


@pytest.fixture
def tokens(store: SqlStore) -> dict[str, str]:
    return {role: create_token(store, f"{role}-bot", role) for role in ("viewer", "editor", "admin")}


@dataclass
class Api:
    """An in-process client with a role's token already in its headers."""

    http: TestClient
    tokens: dict[str, str]

    def as_(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}

    def get(self, url: str, role: str | None = "viewer", **kw) -> httpx.Response:
        return self.http.get(url, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def put(self, url: str, body: dict, role: str | None = "editor", **kw) -> httpx.Response:
        return self.http.put(url, json=body, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def delete(self, url: str, role: str | None = "editor", **kw) -> httpx.Response:
        return self.http.delete(url, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def apply(self, text: str, role: str | None = "editor", ctype: str = "application/yaml",
              **kw) -> httpx.Response:
        headers = {**self.as_(role), "Content-Type": ctype}
        return self.http.post("/api/v1/apply", content=text.encode(), headers=headers, **kw)


@pytest.fixture
def api(store: SqlStore, tokens: dict[str, str]) -> Iterator[Api]:
    with TestClient(create_app(store), raise_server_exceptions=False) as http:
        yield Api(http, tokens)


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(db: str, log: Path, port: int | None = None, *args: str,
                 verify: ssl.SSLContext | None = None) -> LiveServer:
    """``meshbridge serve`` in its own process; returns once /readyz answers. Without
    certificate material unless ``--pki`` is passed in ``args``. With ``verify`` (the args
    then give --tls-cert/--tls-key) it is reached over https, verified by that context."""
    port = port or free_port()
    env = {**os.environ, "MESHBRIDGE_DB": db}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshbridge.cli.server", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", *(args or ("--no-pki",))],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"{'https' if verify else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meshbridge serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1, verify=verify or True).status_code == 200:
                return LiveServer(url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"meshbridge serve did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on the test's database; all are stopped at the end."""
    started: list[LiveServer] = []

    def start(port: int | None = None, *args: str, verify: ssl.SSLContext | None = None
              ) -> LiveServer:
        server = start_server(db_url, tmp_path / "server.log", port, *args, verify=verify)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
